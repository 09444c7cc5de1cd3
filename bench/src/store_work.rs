//! The measuring child of the `store` suite: one row, one store, in a fresh process.
//!
//! The parent starts this binary again as `sessionkit-bench store` with the row in the
//! environment variable [`CHILD_ENV`](super::CHILD_ENV) and the row's prepared directory as the
//! working directory. The child opens the store, runs 64 tasks on a tokio runtime with 2
//! workers beside the 1 ms ticker until the time box ends, and prints what it saw on stdout,
//! one `name value...` line each, for the parent to parse ([`super::ChildReport`]). A fresh
//! process per row keeps the rows' peak memory (`VmHWM`) and I/O counters apart.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sessionkit_atomic_fs::{Durability, RecordAppender, repair_torn_tail};
use sessionkit_session_store::{Activity, Entry, Maintenance, Patch, Store, SyncMode, Transcript};
use sessionkit_write_lock::{LockGuard, Locker};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::naive::{Change, NaiveStore};
use super::sqlite::{SqliteStore, Synchronous};
use super::{Kind, MAX_EXTENSION, Rng, Spec, entry_text, now_ms};
use crate::stall;

/// Runs the row `spec` in the current directory and prints the report on stdout.
pub(super) fn run_child(spec: &str) -> io::Result<()> {
    let spec = Spec::parse(spec)?;
    let dir = std::env::current_dir()?;
    let runtime = stall::two_worker_runtime()?;
    let measured = runtime.block_on(measure(&spec, &dir))?;
    drop(runtime);
    let entries = match spec.kind {
        Kind::Naive => {
            let text = fs::read_to_string(dir.join("sessions.json"))?;
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&text).map_err(io::Error::other)?;
            map.len()
        }
        _ => measured.entries,
    };
    let mut out = String::new();
    let m = &measured;
    let _ = writeln!(out, "updates {}", m.updates);
    let _ = writeln!(out, "sessions {}", m.sessions);
    let _ = writeln!(out, "gave_up {}", m.gave_up);
    let _ = writeln!(out, "wall_ns {}", m.wall.as_nanos());
    let _ = writeln!(out, "write_bytes {}", m.io.write_bytes);
    let _ = writeln!(out, "wchar {}", m.io.wchar);
    let _ = writeln!(out, "log_write_bytes {}", m.log_io.write_bytes);
    let _ = writeln!(out, "log_wchar {}", m.log_io.wchar);
    let _ = writeln!(out, "hwm_kib {}", m.hwm_kib);
    let _ = writeln!(out, "rss_before_kib {}", m.rss_before_kib);
    let _ = writeln!(out, "rss_end_kib {}", m.rss_end_kib);
    let _ = writeln!(out, "entries {entries}");
    if let Some(n) = m.entries_after_pass {
        let _ = writeln!(out, "entries_after_pass {n}");
    }
    let _ = writeln!(out, "rewritten {}", m.rewritten);
    if let Some(c) = &m.counters {
        let _ = writeln!(
            out,
            "counters {} {} {} {} {} {} {}",
            c.batches,
            c.updates,
            c.journal_bytes,
            c.fsyncs,
            c.compactions,
            c.snapshot_bytes,
            c.reloads
        );
    }
    let _ = writeln!(out, "latency_ns {}", join_nanos(&m.latency));
    let _ = writeln!(out, "lateness_ns {}", join_nanos(&m.lateness));
    print!("{out}");
    Ok(())
}

fn join_nanos(samples: &[Duration]) -> String {
    let mut s = String::with_capacity(samples.len() * 8);
    for (i, d) in samples.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{}", d.as_nanos());
    }
    s
}

/// What one row saw.
#[derive(Debug, Default)]
struct Measured {
    updates: u64,
    sessions: u64,
    gave_up: u64,
    wall: Duration,
    io: ProcIo,
    log_io: ProcIo,
    entries: usize,
    /// Ours: the entries after one more maintenance pass.
    entries_after_pass: Option<usize>,
    rewritten: u64,
    /// The peak resident set size at the end of the run.
    hwm_kib: u64,
    /// The resident set size before the store was opened.
    rss_before_kib: u64,
    /// The resident set size right after the tasks finished, the store still open.
    rss_end_kib: u64,
    counters: Option<sessionkit_session_store::IoCounters>,
    latency: Vec<Duration>,
    lateness: Vec<Duration>,
}

/// Two counters of `/proc/<self or thread>/io`.
#[derive(Clone, Copy, Debug, Default)]
struct ProcIo {
    /// Bytes passed to `write`-like system calls.
    wchar: u64,
    /// Bytes the writer caused to be sent to storage: counted when a clean page cache page
    /// becomes dirty, so page by page.
    write_bytes: u64,
}

impl ProcIo {
    fn read(path: &str) -> io::Result<ProcIo> {
        let text = fs::read_to_string(path)?;
        let field = |name: &str| -> io::Result<u64> {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(name)?
                        .strip_prefix(": ")?
                        .trim()
                        .parse()
                        .ok()
                })
                .ok_or_else(|| io::Error::other(format!("no `{name}` in {path}")))
        };
        Ok(ProcIo {
            wchar: field("wchar")?,
            write_bytes: field("write_bytes")?,
        })
    }

    fn since(self, before: ProcIo) -> ProcIo {
        ProcIo {
            wchar: self.wchar.saturating_sub(before.wchar),
            write_bytes: self.write_bytes.saturating_sub(before.write_bytes),
        }
    }
}

/// A size in `/proc/self/status`, in KiB: `VmHWM` (the peak resident set size) or `VmRSS`.
fn status_kib(name: &str) -> io::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| io::Error::other(format!("no {name} in /proc/self/status")))
}

/// The store under test.
enum Backend {
    Ours(Store),
    /// The model of the original, and the in-process FIFO queue in front of it.
    Naive(Arc<NaiveStore>, Arc<Mutex<()>>),
    /// The one SQLite connection, behind a FIFO queue.
    Sqlite(Arc<Mutex<SqliteStore>>),
}

/// One registry update.
enum Update {
    Upsert {
        key: String,
        session_id: String,
        updated_at: i64,
        text: String,
    },
    Patch {
        key: String,
        text: String,
    },
}

fn store_error(e: sessionkit_session_store::Error) -> io::Error {
    io::Error::other(e)
}

impl Backend {
    async fn open(spec: &Spec, dir: &Path) -> io::Result<Backend> {
        Ok(match spec.kind {
            Kind::Ours => {
                let store = Store::builder()
                    .sync(SyncMode::EveryBatch)
                    .maintenance(Maintenance::new().max_entries(Some(spec.cap)))
                    .open_async(dir.join("sessions.json"))
                    .await
                    .map_err(store_error)?;
                Backend::Ours(store)
            }
            Kind::Naive => Backend::Naive(
                Arc::new(NaiveStore::new(dir, spec.cap)),
                Arc::new(Mutex::new(())),
            ),
            Kind::SqliteFull | Kind::SqliteNormal => {
                let sync = if spec.kind == Kind::SqliteFull {
                    Synchronous::Full
                } else {
                    Synchronous::Normal
                };
                let (dir, cap) = (dir.to_path_buf(), spec.cap);
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir, cap, sync))
                    .await
                    .map_err(io::Error::other)??;
                Backend::Sqlite(Arc::new(Mutex::new(store)))
            }
        })
    }

    /// Applies `update`; false if it gave up waiting for the lock when `deadline` passed (it
    /// was then not applied).
    async fn update(&self, update: Update, deadline: Instant) -> io::Result<bool> {
        match self {
            Backend::Ours(store) => {
                match update {
                    Update::Upsert { key, text, .. } => {
                        let entry = Entry::parse(&text).map_err(store_error)?;
                        store.upsert_async(key, entry).await.map_err(store_error)?;
                    }
                    Update::Patch { key, text } => {
                        let patch = Patch::parse(&text).map_err(store_error)?;
                        store
                            .patch_async(key, patch, Activity::Advance)
                            .await
                            .map_err(store_error)?;
                    }
                }
                Ok(true)
            }
            Backend::Naive(store, queue) => {
                let Ok(turn) = tokio::time::timeout_at(deadline, queue.clone().lock_owned()).await
                else {
                    return Ok(false);
                };
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    let _turn = turn;
                    let (key, change) = match update {
                        Update::Upsert { key, text, .. } => (key, Change::Upsert(text)),
                        Update::Patch { key, text } => (key, Change::Patch(text)),
                    };
                    store.update(&key, &change)
                })
                .await
                .map_err(io::Error::other)??;
                Ok(true)
            }
            Backend::Sqlite(conn) => {
                let Ok(mut conn) =
                    tokio::time::timeout_at(deadline, conn.clone().lock_owned()).await
                else {
                    return Ok(false);
                };
                tokio::task::spawn_blocking(move || match update {
                    Update::Upsert {
                        key,
                        session_id,
                        updated_at,
                        text,
                    } => conn.upsert(&key, &session_id, updated_at, &text),
                    Update::Patch { key, text } => conn.patch(&key, &text),
                })
                .await
                .map_err(io::Error::other)??;
                Ok(true)
            }
        }
    }

    async fn entries(&self) -> io::Result<usize> {
        match self {
            Backend::Ours(store) => store.count_async().await.map_err(store_error),
            // Counted by the caller after the peak memory is read.
            Backend::Naive(..) => Ok(0),
            Backend::Sqlite(conn) => Ok(conn.lock().await.rows()),
        }
    }
}

/// A session's transcript, held under its write lock.
enum Log {
    /// Ours: `Store::open_transcript`.
    Ours(Transcript),
    /// The naive and SQLite rows: the same steps written out (take the session's write lock,
    /// cut a torn tail, append through the guard), since they have no `Store`.
    Plain(LockGuard, RecordAppender),
}

impl Log {
    fn open(store: Option<&Store>, locker: &Locker, dir: &Path, id: &str) -> io::Result<Log> {
        if let Some(store) = store {
            let t = store.open_transcript(locker, id).map_err(store_error)?;
            return Ok(Log::Ours(t));
        }
        let path = dir.join(format!("{id}.jsonl"));
        let guard = locker
            .acquire(&path)
            .map_err(|e| io::Error::other(format!("lock {}: {e}", path.display())))?;
        match repair_torn_tail(&path, Durability::AtomicOnly) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(io::Error::other(e)),
        }
        Ok(Log::Plain(guard, RecordAppender::new()))
    }

    fn append(&mut self, record: &[u8]) -> io::Result<()> {
        match self {
            Log::Ours(t) => t.append(record).map(drop).map_err(store_error),
            Log::Plain(guard, appender) => guard
                .append_with(appender, record)
                .map(drop)
                .map_err(io::Error::other),
        }
    }

    fn release(self) -> io::Result<()> {
        match self {
            Log::Ours(t) => t.release().map_err(store_error),
            Log::Plain(guard, _) => guard.release().map_err(io::Error::other),
        }
    }
}

/// What the tasks share.
struct Ctx {
    backend: Backend,
    locker: Locker,
    dir: PathBuf,
    /// The end of the time box: no update starts after it, and a naive or SQLite update
    /// still waiting for its lock gives up.
    deadline: Instant,
    /// Set when the tasks are to stop: at the deadline, or for a row that waits for ours'
    /// first compaction, once it has finished.
    stop: AtomicBool,
    /// Transcript work in flight on the blocking pool, at most atomic-fs's default cap (four
    /// per CPU), as a service keeps it: 64 blocking threads would crowd the 2 workers off the
    /// CPUs, whatever the store does.
    blocking: Semaphore,
    /// The transcripts' own I/O, measured on the blocking threads that did it.
    log_wchar: AtomicU64,
    log_write_bytes: AtomicU64,
}

impl Ctx {
    /// On a blocking thread: opens the transcript if `log` is `None`, appends `records`, and
    /// releases it if `release`. The I/O of the thread meanwhile is the transcripts'.
    async fn transcript(
        self: &Arc<Self>,
        log: Option<Log>,
        id: &str,
        records: Vec<String>,
        release: bool,
    ) -> io::Result<Option<Log>> {
        let permit = self.blocking.acquire().await.map_err(io::Error::other)?;
        let ctx = self.clone();
        let id = id.to_owned();
        let done = tokio::task::spawn_blocking(move || {
            let before = ProcIo::read("/proc/thread-self/io")?;
            let store = match &ctx.backend {
                Backend::Ours(store) => Some(store),
                _ => None,
            };
            let mut log = match log {
                Some(log) => log,
                None => Log::open(store, &ctx.locker, &ctx.dir, &id)?,
            };
            for record in &records {
                log.append(record.as_bytes())?;
            }
            let log = if release {
                log.release()?;
                None
            } else {
                Some(log)
            };
            let spent = ProcIo::read("/proc/thread-self/io")?.since(before);
            ctx.log_wchar.fetch_add(spent.wchar, Ordering::Relaxed);
            ctx.log_write_bytes
                .fetch_add(spent.write_bytes, Ordering::Relaxed);
            Ok(log)
        })
        .await
        .map_err(io::Error::other)?;
        drop(permit);
        done
    }
}

/// What one task did.
#[derive(Debug, Default)]
struct TaskResult {
    /// Each acknowledgement's latency in microseconds: 4 bytes a sample rather than a
    /// `Duration`'s 16, since the samples live in the measured process (several megabytes of
    /// them in ours' rows).
    latency_us: Vec<u32>,
    sessions: u64,
    gave_up: bool,
}

/// One task: creates sessions one after another until the time box ends. A session is an
/// upsert, three patches, and four transcript appends between them.
async fn run_task(ctx: Arc<Ctx>, task: usize) -> io::Result<TaskResult> {
    let mut result = TaskResult::default();
    let mut rng = Rng::new(0x5e55_10b0 ^ (task as u64) << 32 ^ u64::from(std::process::id()));
    'sessions: loop {
        let session_id = rng.uuid();
        let key = format!("hook:{session_id}");
        result.sessions += 1;
        let mut log: Option<Log> = None;
        for step in 0..4 {
            if ctx.stop.load(Ordering::Relaxed) {
                if let Some(log) = log.take() {
                    ctx.transcript(Some(log), &session_id, Vec::new(), true)
                        .await?;
                }
                break 'sessions;
            }
            let now = now_ms();
            let update = match step {
                0 => Update::Upsert {
                    key: key.clone(),
                    session_id: session_id.clone(),
                    updated_at: now,
                    text: entry_text(&mut rng, &session_id, now, "running"),
                },
                1 => Update::Patch {
                    key: key.clone(),
                    text: format!(
                        r#"{{"lastInteractionAt":{now},"label":"hook run {}","thinkingLevel":"high"}}"#,
                        rng.below(10_000)
                    ),
                },
                2 => {
                    let (i, o) = (rng.below(200_000), rng.below(20_000));
                    Update::Patch {
                        key: key.clone(),
                        text: format!(
                            r#"{{"inputTokens":{i},"outputTokens":{o},"totalTokens":{},"lastInteractionAt":{now}}}"#,
                            i + o
                        ),
                    }
                }
                _ => Update::Patch {
                    key: key.clone(),
                    text: format!(r#"{{"status":"done","endedAt":{now}}}"#),
                },
            };
            let started = Instant::now();
            if !ctx.backend.update(update, ctx.deadline).await? {
                result.gave_up = true;
                if let Some(log) = log.take() {
                    ctx.transcript(Some(log), &session_id, Vec::new(), true)
                        .await?;
                }
                break 'sessions;
            }
            let micros = started.elapsed().as_micros();
            result
                .latency_us
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
            log = match step {
                0 => {
                    let records = vec![message(&mut rng, &session_id, "user")];
                    ctx.transcript(None, &session_id, records, false).await?
                }
                1 => {
                    let records = vec![
                        message(&mut rng, &session_id, "assistant"),
                        message(&mut rng, &session_id, "toolResult"),
                    ];
                    ctx.transcript(log, &session_id, records, false).await?
                }
                2 => {
                    let records = vec![message(&mut rng, &session_id, "assistant")];
                    ctx.transcript(log, &session_id, records, true).await?
                }
                _ => log,
            };
        }
    }
    Ok(result)
}

/// One transcript line, about 300 bytes.
fn message(rng: &mut Rng, session_id: &str, role: &str) -> String {
    let words = [
        "the", "build", "passed", "deploy", "weather", "report", "ok", "retry",
    ];
    let mut text = String::new();
    while text.len() < 160 {
        text.push_str(words[rng.below(words.len() as u64) as usize]);
        text.push(' ');
    }
    format!(
        r#"{{"type":"message","id":"{}","parentId":"{session_id}","timestamp":{},"message":{{"role":"{role}","content":[{{"type":"text","text":"{}"}}]}}}}"#,
        rng.uuid(),
        now_ms(),
        text.trim_end()
    )
}

async fn measure(spec: &Spec, dir: &Path) -> io::Result<Measured> {
    let rss_before_kib = status_kib("VmRSS")?;
    let backend = Backend::open(spec, dir).await?;
    let done = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn(stall::tick_until(done.clone()));
    // The ticker is running before the tasks start.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let io_before = ProcIo::read("/proc/self/io")?;
    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        backend,
        locker: Locker::new(),
        dir: dir.to_path_buf(),
        deadline: start + spec.window,
        stop: AtomicBool::new(false),
        blocking: Semaphore::new(sessionkit_atomic_fs::tokio::default_blocking_limit()),
        log_wchar: AtomicU64::new(0),
        log_write_bytes: AtomicU64::new(0),
    });
    let tasks: Vec<_> = (0..spec.tasks)
        .map(|t| tokio::spawn(run_task(ctx.clone(), t)))
        .collect();
    let until_compacted = spec.until_compacted;
    let limit = start + spec.window * MAX_EXTENSION;
    let stopper = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            tokio::time::sleep_until(ctx.deadline).await;
            while until_compacted && Instant::now() < limit {
                match &ctx.backend {
                    Backend::Ours(store) if store.counters().compactions == 0 => {}
                    _ => break,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ctx.stop.store(true, Ordering::Relaxed);
        }
    });
    let mut measured = Measured {
        rss_before_kib,
        ..Measured::default()
    };
    let mut failure = None;
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await.map_err(io::Error::other).and_then(|r| r) {
            Ok(r) => results.push(r),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    measured.wall = start.elapsed();
    measured.io = ProcIo::read("/proc/self/io")?.since(io_before);
    measured.rss_end_kib = status_kib("VmRSS")?;
    // The peak is read now, before the latency samples are gathered into one list and before
    // the checks below (a maintenance pass, a count; the naive row's count parses the whole
    // file once more): what the measuring allocates is not the store's.
    measured.hwm_kib = status_kib("VmHWM")?;
    for r in results {
        measured.updates += r.latency_us.len() as u64;
        measured.sessions += r.sessions;
        measured.gave_up += u64::from(r.gave_up);
        let samples = r.latency_us.iter();
        measured
            .latency
            .extend(samples.map(|&us| Duration::from_micros(u64::from(us))));
    }
    stopper.await.map_err(io::Error::other)?;
    done.store(true, Ordering::Relaxed);
    measured.lateness = ticker.await.map_err(io::Error::other)?;
    if let Some(e) = failure {
        return Err(e);
    }
    measured.log_io = ProcIo {
        wchar: ctx.log_wchar.load(Ordering::Relaxed),
        write_bytes: ctx.log_write_bytes.load(Ordering::Relaxed),
    };
    measured.entries = ctx.backend.entries().await?;
    if let Backend::Ours(store) = &ctx.backend {
        // A pass starts after a batch that finds the count past the cap's slack; the last
        // batches of the run may have found a pass still running. One more pass, as the next
        // batch would start, shows where the cap holds the registry.
        store.maintain_async(false).await.map_err(store_error)?;
        measured.entries_after_pass = Some(store.count_async().await.map_err(store_error)?);
    }
    match &ctx.backend {
        Backend::Ours(store) => measured.counters = Some(store.counters()),
        Backend::Naive(store, _) => measured.rewritten = store.rewritten.load(Ordering::Relaxed),
        Backend::Sqlite(_) => {}
    }
    Ok(measured)
}
