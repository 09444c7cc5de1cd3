//! The same workload through an in-process model of the original design, for `--baseline
//! naive`: OpenClaw's session store and lock as `reference/openclaw-reference.md` describes
//! them (sections 1 to 5), kept as plain as they were.
//!
//! - The registry: every update takes `sessions.json.lock`, re-reads and parses the whole
//!   file, applies the change, runs maintenance synchronously (prune, then sort every entry
//!   and cut to the cap, archiving the transcripts of the entries cut), and rewrites the
//!   whole file with fsync, all under the lock. Updates of one process queue in FIFO order.
//! - Session locks: a lock file made with `O_EXCL`; a contender polls every 50 ms and looks
//!   up the owner's command line on every attempt; a pid that is gone makes the lock stale.
//!   The acquire timeout is two thirds of the max hold (10 s against 15 s in the original),
//!   and the lock is held across the model call.
//! - The watchdog removes a lock held past its max hold and does not tell the holder, whose
//!   later writes land anyway (there is no fence).
//! - The startup sweep runs before the first run, with one owner lookup per lock.
//!
//! Blocking file work runs on blocking threads here too, so the ticker compares the designs,
//! not the thread the work ran on (the original ran it on its one event loop).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::plan::{Fire, Plan, main_key, main_session};
use super::report::{Event, RunOutcome, WorkerSummary};
use super::{Sink, now_ms};

/// The original polled a held lock at a constant 50 ms.
const POLL: Duration = Duration::from_millis(50);
/// OpenClaw's `pruneAfter`: 30 days.
const PRUNE_AFTER_MS: i64 = 30 * 24 * 3600 * 1000;

/// The naive service's shared parts.
#[derive(Debug)]
pub(crate) struct Naive {
    dir: PathBuf,
    plan: Arc<Plan>,
    /// The in-process FIFO in front of the registry lock.
    queue: tokio::sync::Mutex<()>,
    /// Locks this process holds: lock path to (taken at, still ours).
    holds: Mutex<HashMap<PathBuf, (Instant, Arc<AtomicBool>)>>,
    pub(crate) lookups: AtomicU64,
    pub(crate) evicted: Mutex<HashSet<String>>,
    temps: AtomicU64,
}

impl Naive {
    pub(crate) fn new(dir: &Path, plan: Arc<Plan>) -> Naive {
        Naive {
            dir: dir.to_path_buf(),
            plan,
            queue: tokio::sync::Mutex::new(()),
            holds: Mutex::new(HashMap::new()),
            lookups: AtomicU64::new(0),
            evicted: Mutex::new(HashSet::new()),
            temps: AtomicU64::new(0),
        }
    }

    /// The original's owner lookup: the command line, read each time it is needed.
    fn owner_alive(&self, pid: u64) -> bool {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        fs::read(format!("/proc/{pid}/cmdline")).is_ok()
    }

    /// The startup sweep, before anything else runs: one lookup per lock. Returns the number
    /// removed.
    pub(crate) fn startup_sweep(&self) -> u64 {
        let mut removed = 0;
        let Ok(items) = fs::read_dir(&self.dir) else {
            return 0;
        };
        for item in items.flatten() {
            let path = item.path();
            if path.extension().is_none_or(|e| e != "lock") {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            let pid = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("pid").and_then(Value::as_u64));
            if let Some(pid) = pid
                && !self.owner_alive(pid)
                && fs::remove_file(&path).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    /// Takes a lock file the original's way; the hold's "still ours" flag, which only the
    /// watchdog clears (and nobody checks before writing). Each attempt runs on a blocking
    /// thread; the 50 ms pauses between attempts are async.
    async fn lock(
        self: &Arc<Self>,
        target: &Path,
        timeout: Duration,
    ) -> Result<Arc<AtomicBool>, String> {
        let lock = lock_path(target);
        let started = Instant::now();
        loop {
            let (me, path) = (Arc::clone(self), lock.clone());
            let attempt = tokio::task::spawn_blocking(move || me.try_lock(&path))
                .await
                .map_err(|e| format!("lock task: {e}"))??;
            if let Some(ours) = attempt {
                return Ok(ours);
            }
            if started.elapsed() >= timeout {
                return Err("lock timeout".to_owned());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One attempt: create the lock file, or remove it if its owner is gone and try again.
    fn try_lock(&self, lock: &Path) -> Result<Option<Arc<AtomicBool>>, String> {
        loop {
            match OpenOptions::new().write(true).create_new(true).open(lock) {
                Ok(mut f) => {
                    let record = format!(
                        r#"{{"pid":{},"createdAt":{}}}"#,
                        std::process::id(),
                        now_ms()
                    );
                    f.write_all(record.as_bytes())
                        .map_err(|e| format!("write lock: {e}"))?;
                    let ours = Arc::new(AtomicBool::new(true));
                    self.holds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(lock.to_path_buf(), (Instant::now(), Arc::clone(&ours)));
                    return Ok(Some(ours));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let pid = fs::read(lock).ok().and_then(|b| {
                        serde_json::from_slice::<Value>(&b)
                            .ok()
                            .and_then(|v| v.get("pid").and_then(Value::as_u64))
                    });
                    match pid {
                        Some(pid) if !self.owner_alive(pid) => {
                            let _ = fs::remove_file(lock);
                        }
                        _ => return Ok(None),
                    }
                }
                Err(e) => return Err(format!("create lock: {e}")),
            }
        }
    }

    /// Releases a hold that is still ours, on a blocking thread.
    async fn unlock(self: &Arc<Self>, target: &Path, ours: Arc<AtomicBool>) {
        let (me, lock) = (Arc::clone(self), lock_path(target));
        let _ = tokio::task::spawn_blocking(move || {
            let mut holds = me.holds.lock().unwrap_or_else(|e| e.into_inner());
            if ours.load(Ordering::Relaxed) {
                holds.remove(&lock);
                let _ = fs::remove_file(&lock);
            }
        })
        .await;
    }

    /// The original's watchdog: removes locks held past the max hold, telling nobody.
    pub(crate) async fn watchdog(self: Arc<Self>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let mut expired = Vec::new();
            self.holds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|lock, (since, ours)| {
                    let over = since.elapsed() > self.plan.max_hold();
                    if over {
                        ours.store(false, Ordering::Relaxed);
                        expired.push(lock.clone());
                    }
                    !over
                });
            if !expired.is_empty() {
                let _ = tokio::task::spawn_blocking(move || {
                    for lock in expired {
                        let _ = fs::remove_file(lock);
                    }
                })
                .await;
            }
        }
    }

    /// One registry update the original's way, on a blocking thread.
    async fn update(self: &Arc<Self>, key: String, change: Change) -> Result<(), String> {
        let _turn = self.queue.lock().await;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.update_blocking(&key, change))
            .await
            .map_err(|e| format!("update task: {e}"))?
    }

    fn update_blocking(&self, key: &str, change: Change) -> Result<(), String> {
        let path = self.dir.join("sessions.json");
        let lock = lock_path(&path);
        // Within one process the queue serialises updates, so this never waits.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .map_err(|e| format!("registry lock: {e}"))?;
        let result = self.rewrite(&path, key, change);
        let _ = fs::remove_file(&lock);
        result
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "a model of the original's writer, bare renames included"
    )]
    fn rewrite(&self, path: &Path, key: &str, change: Change) -> Result<(), String> {
        let bytes = fs::read(path).map_err(|e| format!("read registry: {e}"))?;
        let mut store: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|e| format!("parse registry: {e}"))?;
        let now = now_ms();
        match change {
            Change::Upsert(entry) => {
                store.insert(key.to_owned(), entry);
            }
            Change::Patch(patch) => {
                let entry = store
                    .entry(key.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let (Value::Object(e), Value::Object(p)) = (entry, patch) {
                    for (k, v) in p {
                        if v.is_null() {
                            e.remove(&k);
                        } else {
                            e.insert(k, v);
                        }
                    }
                    let was = e.get("updatedAt").and_then(Value::as_i64).unwrap_or(0);
                    e.insert("updatedAt".to_owned(), Value::from(was.max(now)));
                }
            }
        }
        // Maintenance on every save: prune, then sort everything and cut to the cap.
        let updated = |v: &Value| v.get("updatedAt").and_then(Value::as_i64).unwrap_or(0);
        let mut gone: Vec<(String, Value)> = Vec::new();
        let old: Vec<String> = store
            .iter()
            .filter(|(_, v)| now - updated(v) > PRUNE_AFTER_MS)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            if let Some(v) = store.remove(&k) {
                gone.push((k, v));
            }
        }
        if store.len() > self.plan.max_entries {
            let mut all: Vec<(String, Value)> = std::mem::take(&mut store).into_iter().collect();
            all.sort_by_key(|(_, v)| std::cmp::Reverse(updated(v)));
            gone.extend(all.split_off(self.plan.max_entries));
            store = all.into_iter().collect();
        }
        if !gone.is_empty() {
            let referenced: HashSet<&str> = store
                .values()
                .filter_map(|v| v.get("sessionId").and_then(Value::as_str))
                .collect();
            let mut evicted = self.evicted.lock().unwrap_or_else(|e| e.into_inner());
            for (k, v) in &gone {
                evicted.insert(k.clone());
                if let Some(sid) = v.get("sessionId").and_then(Value::as_str)
                    && !referenced.contains(sid)
                {
                    let t = self.dir.join(format!("{sid}.jsonl"));
                    let _ = fs::rename(&t, self.dir.join(format!("{sid}.jsonl.deleted.{now}")));
                }
            }
        }
        let text = serde_json::to_string_pretty(&Value::Object(store))
            .map_err(|e| format!("serialise registry: {e}"))?;
        let temp = self.dir.join(format!(
            "sessions.json.{}.{}.tmp",
            std::process::id(),
            self.temps.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = File::create(&temp).map_err(|e| format!("create temp: {e}"))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("write temp: {e}"))?;
        fs::rename(&temp, path).map_err(|e| format!("rename: {e}"))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("fsync dir: {e}"))?;
        Ok(())
    }

    /// Appends one record to a transcript, whoever holds its lock now.
    async fn append(&self, sid: &str, record: &str) -> Result<(), String> {
        let path = self.dir.join(format!("{sid}.jsonl"));
        let line = format!("{record}\n");
        tokio::task::spawn_blocking(move || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(line.as_bytes()))
        })
        .await
        .map_err(|e| format!("append task: {e}"))?
        .map_err(|e| format!("append: {e}"))
    }
}

/// One registry change.
#[derive(Debug)]
enum Change {
    Upsert(Value),
    Patch(Value),
}

fn lock_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn failed(mut outcome: RunOutcome, step: &str, e: impl std::fmt::Display) -> RunOutcome {
    outcome.failed = Some(format!("{step}: {e}"));
    outcome
}

/// Runs every fire through the naive model beside a 1 ms ticker; the startup sweep first.
pub(crate) async fn run_fires(
    naive: Arc<Naive>,
    fires: Vec<Fire>,
    sink: Arc<Sink>,
    done: Arc<AtomicUsize>,
) -> WorkerSummary {
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn(super::ours::ticker(Arc::clone(&stop)));
    let watchdog = tokio::spawn(Arc::clone(&naive).watchdog(Arc::clone(&stop)));

    let blocked = Instant::now();
    let me = Arc::clone(&naive);
    let removed = tokio::task::spawn_blocking(move || me.startup_sweep())
        .await
        .unwrap_or(0);
    sink.emit(Event::Swept {
        removed,
        lookups: naive.lookups.swap(0, Ordering::Relaxed),
    });
    let startup_blocked_us = u64::try_from(blocked.elapsed().as_micros()).unwrap_or(u64::MAX);
    let start = Instant::now();

    super::schedule(fires, start, &sink, &done, |fire, sink| {
        let naive = Arc::clone(&naive);
        async move { run_one(&naive, &fire, &sink).await }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let ticker_max_us = ticker.await.unwrap_or(u64::MAX);
    let _ = watchdog.await;
    // Every lookup after the sweep was a contender's, one per attempt.
    sink.emit(Event::Lookups {
        count: naive.lookups.swap(0, Ordering::Relaxed),
    });
    WorkerSummary {
        ticker_max_us,
        startup_blocked_us,
    }
}

async fn run_one(naive: &Arc<Naive>, fire: &Fire, sink: &Sink) -> RunOutcome {
    let key = fire.key();
    let sid = fire.session_id();
    let plan = &naive.plan;
    let timeout = plan.max_hold() * 2 / 3;
    let mut outcome = RunOutcome {
        key: key.clone(),
        hung: fire.hang,
        ..RunOutcome::default()
    };
    let entry = serde_json::json!({
        "sessionId": sid, "updatedAt": now_ms(), "status": "running",
        "label": format!("cron {} of agent {}", fire.job, fire.agent), "simVersion": 1,
    });
    if let Err(e) = naive.update(key.clone(), Change::Upsert(entry)).await {
        return failed(outcome, "upsert", e);
    }
    sink.emit(Event::Acked {
        key: key.clone(),
        version: 1,
    });

    let transcript = naive.dir.join(format!("{sid}.jsonl"));
    let asked = Instant::now();
    let ours = naive.lock(&transcript, timeout).await;
    // A wait that timed out is a wait too.
    outcome.waits_us.push(micros(asked.elapsed()));
    let ours = match ours {
        Ok(o) => o,
        Err(e) => return failed(outcome, "lock transcript", e),
    };
    let held = Instant::now();
    for record in [
        r#"{"role":"user","text":"run the scheduled job"}"#,
        r#"{"role":"tool","text":"job input read"}"#,
    ] {
        if let Err(e) = naive.append(&sid, record).await {
            return failed(outcome, "append", e);
        }
    }
    // The original held the session lock across the model call.
    tokio::time::sleep(Duration::from_millis(fire.model_ms)).await;
    if let Err(e) = naive
        .append(&sid, r#"{"role":"assistant","text":"job done"}"#)
        .await
    {
        return failed(outcome, "append", e);
    }
    naive.unlock(&transcript, ours).await;
    outcome.longest_hold_us = micros(held.elapsed());

    let patch =
        serde_json::json!({"status": "done", "simVersion": 2, "outputTokens": fire.model_ms * 40});
    if let Err(e) = naive.update(key.clone(), Change::Patch(patch)).await {
        return failed(outcome, "patch", e);
    }
    sink.emit(Event::Acked {
        key: key.clone(),
        version: 2,
    });

    let main = naive
        .dir
        .join(format!("{}.jsonl", main_session(fire.agent)));
    let asked = Instant::now();
    let ours = naive.lock(&main, timeout).await;
    outcome.waits_us.push(micros(asked.elapsed()));
    let ours = match ours {
        Ok(o) => o,
        Err(e) => return failed(outcome, "lock main session", e),
    };
    let held = Instant::now();
    let note = format!(r#"{{"role":"system","text":"cron run {key} finished"}}"#);
    if fire.hang {
        tokio::time::sleep(plan.hang()).await;
        outcome.revoked = !ours.load(Ordering::Relaxed);
        outcome.longest_hold_us = outcome.longest_hold_us.max(micros(held.elapsed()));
        // No fence: the late write lands, behind whoever holds the lock now.
        outcome.wrote_after_losing_lock =
            naive.append(&main_session(fire.agent), &note).await.is_ok() && outcome.revoked;
        naive.unlock(&main, ours).await;
    } else {
        if let Err(e) = naive.append(&main_session(fire.agent), &note).await {
            return failed(outcome, "announce", e);
        }
        naive.unlock(&main, ours).await;
        outcome.longest_hold_us = outcome.longest_hold_us.max(micros(held.elapsed()));
    }
    let touch = serde_json::json!({});
    if let Err(e) = naive
        .update(main_key(fire.agent), Change::Patch(touch))
        .await
    {
        return failed(outcome, "touch main session", e);
    }
    outcome
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
