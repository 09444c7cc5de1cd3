//! The `store` suite's multi-process section: several processes writing one durable store at
//! once, ours against SQLite in WAL mode with `synchronous=FULL`.
//!
//! Every process of a row is this binary again, as `sessionkit-bench store` with its role in
//! the environment variable [`WRITER_ENV`] and the row's directory as its working directory
//! (see [`run_writer`]). A writer opens the store the parent prepared, says `ready`, and waits
//! for `go` on stdin, so that opening is not timed and every process starts at once; then its
//! threads each upsert their own new keys with small entries, one durable update after another,
//! and it says `done` and prints what it saw, one `name value...` line each
//! ([`WriterReport`]). The parent times a row from its `go` to the last `done`.
//!
//! - Ours: `Store::builder().sync(SyncMode::EveryBatch)`, one store per process, the threads
//!   calling the blocking `upsert`. Each process's writer thread takes the journal's OS lock
//!   per batch, so the processes take turns at the journal.
//! - SQLite: one connection per process, shared by its threads through a lock that serves them
//!   in arrival order (as the suite's other SQLite rows queue their tasks), `busy_timeout` 60 s,
//!   each update one `BEGIN IMMEDIATE` ... `COMMIT` transaction, so the processes take turns at
//!   SQLite's write lock.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use sessionkit_session_store::{Entry, Store, SyncMode};

use super::sqlite::DB_NAME;
use super::{Kind, fmt_ms, fmt_num, fmt_ratio, max, now_ms, yes_no};
use crate::common::context;
use crate::stats::percentile;
use crate::table::{self, Align};

/// The environment variable that makes `sessionkit-bench store` one writer process of a
/// multi-process row: it holds the writer's [`Role`].
pub(super) const WRITER_ENV: &str = "SESSIONKIT_BENCH_STORE_WRITER";

/// How long a SQLite connection waits for another process's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The stores of this section, in the order of the first round.
pub(super) const KINDS: [Kind; 2] = [Kind::Ours, Kind::SqliteFull];

/// How a multi-process row is laid out: processes × threads × upserts per thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) procs: usize,
    pub(super) threads: usize,
    pub(super) per_thread: usize,
}

impl Layout {
    /// Updates of one row.
    pub(super) fn updates(self) -> u64 {
        (self.procs * self.threads * self.per_thread) as u64
    }
}

/// One writer process's part of a row: which store, its number, and its threads' work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Role {
    kind: Kind,
    index: usize,
    threads: usize,
    per_thread: usize,
}

impl Role {
    fn to_env(self) -> String {
        format!(
            "{} {} {} {}",
            self.kind.name(),
            self.index,
            self.threads,
            self.per_thread
        )
    }

    fn parse(text: &str) -> io::Result<Role> {
        let bad = || io::Error::other(format!("{WRITER_ENV}: cannot parse `{text}`"));
        let words: Vec<&str> = text.split_whitespace().collect();
        let [kind, index, threads, per_thread] = words[..] else {
            return Err(bad());
        };
        let kind = Kind::from_name(kind)
            .filter(|k| KINDS.contains(k))
            .ok_or_else(bad)?;
        Ok(Role {
            kind,
            index: index.parse().map_err(|_| bad())?,
            threads: threads.parse().map_err(|_| bad())?,
            per_thread: per_thread.parse().map_err(|_| bad())?,
        })
    }
}

/// The key and the compact entry of upsert `i` of thread `thread` in process `proc`: a new key
/// every time, an entry of about 50 bytes.
fn key_and_entry(proc: usize, thread: usize, i: usize) -> (String, String) {
    let id = format!("p{proc}t{thread}i{i}");
    let entry = format!(r#"{{"sessionId":"{id}","updatedAt":{}}}"#, now_ms());
    (format!("hook:{id}"), entry)
}

// ---------------------------------------------------------------------------------------------
// A writer process.

/// Runs one writer process of a row, with the role `role`, in the current directory.
pub(super) fn run_writer(role: &str) -> io::Result<()> {
    let role = Role::parse(role)?;
    let dir = std::env::current_dir()?;
    let store = WriterStore::open(role.kind, &dir)?;
    // The processes open the store at the same time; what that costs is not the row's.
    let at_open = match &store {
        WriterStore::Ours(store) => Some(store.counters()),
        WriterStore::Sqlite(..) => None,
    };
    let mut out = io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut line = String::new();
    io::stdin().read_line(&mut line)?;
    if line.trim_end() != "go" {
        return Err(io::Error::other(
            "the parent went away before it said `go`; nothing was written",
        ));
    }
    let latency_us = std::thread::scope(|s| {
        let threads: Vec<_> = (0..role.threads)
            .map(|t| {
                let store = &store;
                s.spawn(move || store.run_thread(role.index, t, role.per_thread))
            })
            .collect();
        let mut all = Vec::with_capacity(role.threads * role.per_thread);
        let mut failure = None;
        for thread in threads {
            match thread.join() {
                Ok(Ok(samples)) => all.extend(samples),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => failure = failure.or(Some(io::Error::other("a writer thread panicked"))),
            }
        }
        failure.map_or(Ok(all), Err)
    })?;
    writeln!(out, "done")?;
    out.flush()?;
    let mut report = String::new();
    let _ = writeln!(report, "updates {}", latency_us.len());
    if let (WriterStore::Ours(store), Some(a)) = (&store, at_open) {
        let c = store.counters();
        let _ = writeln!(
            report,
            "counters {} {} {} {} {}",
            c.journal_lock_waits.saturating_sub(a.journal_lock_waits),
            c.batches.saturating_sub(a.batches),
            c.fsyncs.saturating_sub(a.fsyncs),
            c.compactions.saturating_sub(a.compactions),
            c.reloads.saturating_sub(a.reloads)
        );
    }
    let _ = write!(report, "latency_us");
    for us in &latency_us {
        let _ = write!(report, " {us}");
    }
    report.push('\n');
    out.write_all(report.as_bytes())?;
    out.flush()
}

/// A writer process's store.
#[derive(Debug)]
enum WriterStore {
    Ours(Store),
    /// The process's one connection, and the queue its threads take turns in.
    Sqlite(Mutex<Connection>, FifoLock),
}

fn store_error(e: sessionkit_session_store::Error) -> io::Error {
    io::Error::other(e)
}

fn db_error(e: rusqlite::Error) -> io::Error {
    io::Error::other(format!("sqlite: {e}"))
}

impl WriterStore {
    /// Opens the store the parent prepared in `dir`; a missing one is an error, not created.
    fn open(kind: Kind, dir: &Path) -> io::Result<WriterStore> {
        match kind {
            Kind::SqliteFull => {
                let path = dir.join(DB_NAME);
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&path, flags).map_err(|e| {
                    io::Error::other(format!("sqlite: open {}: {e}", path.display()))
                })?;
                conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
                conn.pragma_update(None, "journal_mode", "WAL")
                    .map_err(db_error)?;
                conn.pragma_update(None, "synchronous", "FULL")
                    .map_err(db_error)?;
                Ok(WriterStore::Sqlite(Mutex::new(conn), FifoLock::default()))
            }
            _ => {
                let store = Store::builder()
                    .sync(SyncMode::EveryBatch)
                    .create(false)
                    .open(dir.join("sessions.json"))
                    .map_err(store_error)?;
                Ok(WriterStore::Ours(store))
            }
        }
    }

    /// One thread's work: `per_thread` upserts of new keys, one after another; returns each
    /// acknowledgement's latency in microseconds.
    fn run_thread(&self, proc: usize, thread: usize, per_thread: usize) -> io::Result<Vec<u32>> {
        let mut samples = Vec::with_capacity(per_thread);
        for i in 0..per_thread {
            let (key, text) = key_and_entry(proc, thread, i);
            let started = match self {
                WriterStore::Ours(store) => {
                    let entry = Entry::parse(&text).map_err(store_error)?;
                    let started = Instant::now();
                    store.upsert(key, entry).map_err(store_error)?;
                    started
                }
                WriterStore::Sqlite(conn, queue) => {
                    let started = Instant::now();
                    queue.run(|| {
                        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                        sqlite_upsert(&mut conn, &key, &text)
                    })?;
                    started
                }
            };
            let micros = started.elapsed().as_micros();
            samples.push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
        Ok(samples)
    }
}

/// Inserts or replaces `key` in one `BEGIN IMMEDIATE` transaction, as the suite's other SQLite
/// rows do.
fn sqlite_upsert(conn: &mut Connection, key: &str, entry: &str) -> io::Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_error)?;
    tx.prepare_cached(
        "INSERT INTO sessions (key, session_id, updated_at, entry) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET session_id = excluded.session_id,
             updated_at = excluded.updated_at, entry = excluded.entry",
    )
    .and_then(|mut s| {
        s.execute(params![
            key,
            key.trim_start_matches("hook:"),
            now_ms(),
            entry
        ])
    })
    .map_err(db_error)?;
    tx.commit().map_err(db_error)
}

/// A lock that serves its waiters in the order they arrived (a ticket lock), so that no thread
/// of a SQLite writer takes the connection again and again while the others wait.
#[derive(Debug, Default)]
struct FifoLock {
    tickets: Mutex<Tickets>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct Tickets {
    next: u64,
    serving: u64,
}

impl FifoLock {
    /// Waits for this caller's turn, runs `f`, and hands the turn on, even if `f` panics.
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut tickets = self.tickets.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = tickets.next;
        tickets.next += 1;
        while tickets.serving != mine {
            tickets = self
                .turn
                .wait(tickets)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(tickets);
        let _turn = Turn(self);
        f()
    }
}

/// The holder's turn of a [`FifoLock`]; dropping it lets the next ticket in.
struct Turn<'a>(&'a FifoLock);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut tickets = self
            .0
            .tickets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tickets.serving += 1;
        drop(tickets);
        self.0.turn.notify_all();
    }
}

// ---------------------------------------------------------------------------------------------
// The parent.

/// What one writer process reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct WriterReport {
    updates: u64,
    /// Ours: journal lock waits, batches, fsyncs, compactions, reloads.
    counters: Option<[u64; 5]>,
    latency_us: Vec<u32>,
}

impl WriterReport {
    fn parse(text: &str) -> io::Result<WriterReport> {
        let mut r = WriterReport::default();
        let bad = |line: &str| io::Error::other(format!("a writer reported `{line:.80}`"));
        let mut latency = false;
        for line in text.lines() {
            let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
            match name {
                "updates" => r.updates = rest.trim().parse().map_err(|_| bad(line))?,
                "counters" => {
                    let values: Vec<u64> = rest
                        .split_whitespace()
                        .map(|w| w.parse().map_err(|_| bad(line)))
                        .collect::<io::Result<_>>()?;
                    r.counters = Some(values.try_into().map_err(|_| bad(line))?);
                }
                "latency_us" => {
                    latency = true;
                    r.latency_us = rest
                        .split_whitespace()
                        .map(|w| w.parse().map_err(|_| bad(line)))
                        .collect::<io::Result<_>>()?;
                }
                _ => return Err(bad(line)),
            }
        }
        if !latency || r.latency_us.len() as u64 != r.updates {
            return Err(io::Error::other(format!(
                "a writer reported {} updates and {} latencies",
                r.updates,
                r.latency_us.len()
            )));
        }
        Ok(r)
    }
}

/// A writer process of a row; killed and reaped if it is still running when dropped.
struct Writer {
    index: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Writer {
    fn spawn(exe: &Path, dir: &Path, role: Role) -> io::Result<Writer> {
        let mut child = Command::new(exe)
            .arg("store")
            .env(WRITER_ENV, role.to_env())
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| context(e, format!("start {} store as a writer", exe.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("a writer process has no pipes"));
        };
        Ok(Writer {
            index: role.index,
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        })
    }

    /// Reads the line `expected`; anything else, or the end of its output, is an error that
    /// says how the process ended.
    fn expect_line(&mut self, expected: &str) -> io::Result<()> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.trim_end() == expected {
            return Ok(());
        }
        let ended = if line.is_empty() {
            self.stdin = None;
            match self.child.wait() {
                Ok(status) => format!("it ended ({status})"),
                Err(e) => format!("it ended ({e})"),
            }
        } else {
            format!("it said `{:.80}`", line.trim_end())
        };
        Err(io::Error::other(format!(
            "writer {} did not say `{expected}`: {ended}",
            self.index
        )))
    }

    fn say_go(&mut self) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("a writer's stdin is closed"))?;
        writeln!(stdin, "go")?;
        stdin.flush()
    }

    /// Reads the report after `done` and waits for the process to exit successfully.
    fn finish(mut self) -> io::Result<WriterReport> {
        self.stdin = None;
        let mut text = String::new();
        self.stdout.read_to_string(&mut text)?;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "writer {} failed: {status}",
                self.index
            )));
        }
        WriterReport::parse(&text)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one row saw, over all its processes.
#[derive(Clone, Debug, Default)]
pub(super) struct RowReport {
    updates: u64,
    /// From the parent's `go` to the last writer's `done`.
    wall: Duration,
    /// Ours: journal lock waits, batches, fsyncs, compactions, reloads, summed over the
    /// processes.
    counters: Option<[u64; 5]>,
    latency: Vec<Duration>,
    /// Keys the store held afterwards, counted by a fresh open in the parent.
    held: u64,
}

impl RowReport {
    /// Updates per second.
    pub(super) fn rate(&self) -> f64 {
        self.updates as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub(super) fn wall(&self) -> Duration {
        self.wall
    }

    pub(super) fn p99(&self) -> Duration {
        percentile(&self.latency, 99.0)
    }
}

/// Creates an empty store of `kind` in `dir`, as a service would have it before its processes
/// start.
fn prepare(kind: Kind, dir: &Path) -> io::Result<()> {
    fs::create_dir(dir).map_err(|e| context(e, format!("create {}", dir.display())))?;
    match kind {
        Kind::SqliteFull => {
            let db = dir.join(DB_NAME);
            super::sqlite::create(&db, std::iter::empty())?;
            File::open(&db)?.sync_all()?;
        }
        _ => {
            let store = Store::builder()
                .sync(SyncMode::EveryBatch)
                .open(dir.join("sessions.json"))
                .map_err(store_error)?;
            drop(store);
        }
    }
    File::open(dir)?.sync_all()
}

/// Keys in the store of `kind` in `dir`, through a fresh open.
fn count_keys(kind: Kind, dir: &Path) -> io::Result<u64> {
    match kind {
        Kind::SqliteFull => {
            let conn = Connection::open_with_flags(dir.join(DB_NAME), OpenFlags::default())
                .map_err(db_error)?;
            let n: i64 = conn
                .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
                .map_err(db_error)?;
            Ok(u64::try_from(n).unwrap_or(0))
        }
        _ => {
            let store = Store::builder()
                .create(false)
                .open(dir.join("sessions.json"))
                .map_err(store_error)?;
            Ok(store.count().map_err(store_error)? as u64)
        }
    }
}

/// Runs one row: prepares `dir`, starts the writers, lets them go at once, and gathers their
/// reports.
pub(super) fn run_row(exe: &Path, dir: &Path, kind: Kind, layout: Layout) -> io::Result<RowReport> {
    prepare(kind, dir)?;
    let mut writers = Vec::with_capacity(layout.procs);
    for index in 0..layout.procs {
        let role = Role {
            kind,
            index,
            threads: layout.threads,
            per_thread: layout.per_thread,
        };
        writers.push(Writer::spawn(exe, dir, role)?);
    }
    for w in &mut writers {
        w.expect_line("ready")?;
    }
    let start = Instant::now();
    for w in &mut writers {
        w.say_go()?;
    }
    // Reading the `done`s in turn ends at the last one's arrival: one that came earlier is
    // already waiting in its pipe.
    for w in &mut writers {
        w.expect_line("done")?;
    }
    let wall = start.elapsed();
    let mut row = RowReport {
        wall,
        ..RowReport::default()
    };
    for w in writers {
        let r = w.finish()?;
        row.updates += r.updates;
        if let Some(c) = r.counters {
            let sum = row.counters.get_or_insert([0; 5]);
            for (s, v) in sum.iter_mut().zip(c) {
                *s += v;
            }
        }
        let samples = r.latency_us.iter();
        row.latency
            .extend(samples.map(|&us| Duration::from_micros(u64::from(us))));
    }
    row.held = count_keys(kind, dir)?;
    Ok(row)
}

/// All rounds of one store.
#[derive(Debug)]
pub(super) struct MultiResult {
    pub(super) kind: Kind,
    total: RowReport,
    /// The fewest keys any round's store held afterwards, and the most.
    held: (u64, u64),
    rounds: usize,
}

impl MultiResult {
    pub(super) fn new(kind: Kind) -> MultiResult {
        MultiResult {
            kind,
            total: RowReport::default(),
            held: (u64::MAX, 0),
            rounds: 0,
        }
    }

    pub(super) fn add(&mut self, r: RowReport) {
        let t = &mut self.total;
        t.updates += r.updates;
        t.wall += r.wall;
        if let Some(c) = r.counters {
            let sum = t.counters.get_or_insert([0; 5]);
            for (s, v) in sum.iter_mut().zip(c) {
                *s += v;
            }
        }
        t.latency.extend(r.latency);
        self.held = (self.held.0.min(r.held), self.held.1.max(r.held));
        self.rounds += 1;
    }

    fn rate(&self) -> f64 {
        self.total.rate()
    }
}

/// The section's title and the SQLite layout, for the report's header.
pub(super) fn header_line(layout: Layout) -> String {
    format!(
        "- several processes: {} processes writing one empty store at once, each with {} \
         threads doing {} upserts of new keys one after another (keys like `hook:p0t1i2`, \
         entries of about 50 bytes: `sessionId` and `updatedAt`), durable; ours is \
         `Store::builder().sync(SyncMode::EveryBatch)` in every process, the threads calling \
         the blocking `upsert`; SQLite is WAL mode with `synchronous=FULL` and `busy_timeout` \
         {} s, one connection per process shared by its threads in arrival order, each update \
         one `BEGIN IMMEDIATE` transaction; every process has its store open before the row's \
         clock starts, and the two rows take turns in rounds, the first rotating",
        layout.procs,
        layout.threads,
        layout.per_thread,
        BUSY_TIMEOUT.as_secs()
    )
}

/// The section: a table, what it means, the throughput line and the check.
pub(super) fn render(layout: Layout, results: &[MultiResult]) -> String {
    let headers = [
        ("store", Align::Left),
        ("processes × threads", Align::Right),
        ("updates", Align::Right),
        ("updates/s", Align::Right),
        ("vs FULL", Align::Right),
        ("p50 ack (ms)", Align::Right),
        ("p99 ack (ms)", Align::Right),
        ("max ack (ms)", Align::Right),
        ("journal lock waits", Align::Right),
        ("batches", Align::Right),
        ("updates/batch", Align::Right),
    ];
    let full = results.iter().find(|r| r.kind == Kind::SqliteFull);
    let full_rate = full.map_or(0.0, MultiResult::rate);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let t = &r.total;
            let (waits, batches, per_batch) = match t.counters {
                Some([waits, batches, ..]) => (
                    waits.to_string(),
                    batches.to_string(),
                    fmt_num(t.updates as f64 / batches.max(1) as f64),
                ),
                None => ("—".to_owned(), "—".to_owned(), "—".to_owned()),
            };
            vec![
                r.kind.label().to_owned(),
                format!("{} × {}", layout.procs, layout.threads),
                t.updates.to_string(),
                fmt_num(r.rate()),
                if full_rate > 0.0 {
                    fmt_ratio(r.rate() / full_rate)
                } else {
                    "—".to_owned()
                },
                fmt_ms(percentile(&t.latency, 50.0)),
                fmt_ms(percentile(&t.latency, 99.0)),
                fmt_ms(max(&t.latency)),
                waits,
                batches,
                per_batch,
            ]
        })
        .collect();
    let rounds = results.iter().map(|r| r.rounds).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "**Several processes writing one store: {} processes × {} threads × {} upserts of new \
         keys, durable**\n",
        layout.procs, layout.threads, layout.per_thread
    );
    out.push_str(&table::render(&headers, &rows));
    out.push('\n');
    let _ = writeln!(
        out,
        "Updates/s is every acknowledged update of all rounds ({rounds}) over the rows' summed \
         wall time, from the moment every process had its store open and was told to start to \
         the moment the last one finished; vs FULL is that rate over SQLite \
         `synchronous=FULL`'s. The acknowledgement latencies are pooled over all processes' \
         updates, each from the call to its answer, waiting for the other processes included. \
         Journal lock waits (`IoCounters::journal_lock_waits` after the open, summed over the \
         processes) counts the times an operation of a process (a batch, a compaction, reading \
         what the others appended) found the journal's OS lock held by another process and \
         waited for it; batches are ours' group commits, each one write and one fsync. \
         SQLite's waits in its busy handler are not counted.\n"
    );
    if let (Some(ours), Some(full)) = (results.iter().find(|r| r.kind == Kind::Ours), full) {
        let _ = writeln!(
            out,
            "multi-process: ours {} updates/s against SQLite FULL {} ({}), p99 ack {} ms \
             against {} ms",
            fmt_num(ours.rate()),
            fmt_num(full.rate()),
            fmt_ratio(ours.rate() / full.rate().max(1e-9)),
            fmt_ms(percentile(&ours.total.latency, 99.0)),
            fmt_ms(percentile(&full.total.latency, 99.0))
        );
    }
    let expected = layout.updates();
    let all_held = results
        .iter()
        .all(|r| r.rounds > 0 && r.held == (expected, expected));
    let spread: Vec<String> = results
        .iter()
        .map(|r| {
            let (lo, hi) = r.held;
            if lo == hi {
                format!("{} {lo}", r.kind.name())
            } else {
                format!("{} {lo}–{hi}", r.kind.name())
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "check: every store held all {expected} keys after every round, counted by a fresh \
         open: {} ({})",
        yes_no(all_held),
        spread.join("; ")
    );
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for kind in KINDS {
            let role = Role {
                kind,
                index: 3,
                threads: 8,
                per_thread: 500,
            };
            assert_eq!(Role::parse(&role.to_env()).unwrap(), role);
        }
        assert!(Role::parse("ours 1 8").is_err());
        assert!(
            Role::parse("naive 0 8 500").is_err(),
            "not a multi-process row"
        );
        assert!(Role::parse("ours x 8 500").is_err());
    }

    #[test]
    fn writer_reports_parse() {
        let r = WriterReport::parse("updates 2\ncounters 1 2 3 4 5\nlatency_us 10 20\n").unwrap();
        assert_eq!(r.updates, 2);
        assert_eq!(r.counters, Some([1, 2, 3, 4, 5]));
        assert_eq!(r.latency_us, [10, 20]);
        let sqlite = WriterReport::parse("updates 1\nlatency_us 7\n").unwrap();
        assert_eq!(sqlite.counters, None);
        assert!(WriterReport::parse("updates 2\nlatency_us 10\n").is_err());
        assert!(
            WriterReport::parse("updates 0\n").is_err(),
            "no latency line"
        );
        assert!(WriterReport::parse("updates 1\ncounters 1 2\nlatency_us 1\n").is_err());
        assert!(WriterReport::parse("bogus 1\n").is_err());
    }

    #[test]
    fn the_fifo_lock_serves_in_turn() {
        let lock = FifoLock::default();
        let inside = Mutex::new(0u32);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        lock.run(|| {
                            let mut n = inside.lock().unwrap();
                            *n += 1;
                        });
                    }
                });
            }
        });
        assert_eq!(*inside.lock().unwrap(), 400);
        let t = lock.tickets.lock().unwrap();
        assert_eq!((t.next, t.serving), (400, 400));
    }

    fn result(kind: Kind, updates: u64, wall_ms: u64, counters: Option<[u64; 5]>) -> MultiResult {
        let mut r = MultiResult::new(kind);
        r.add(RowReport {
            updates,
            wall: Duration::from_millis(wall_ms),
            counters,
            latency: (1..=updates).map(Duration::from_micros).collect(),
            held: updates,
        });
        r
    }

    #[test]
    fn the_section_is_a_table_a_ratio_and_a_check() {
        let layout = Layout {
            procs: 2,
            threads: 2,
            per_thread: 50,
        };
        let results = [
            result(Kind::Ours, 200, 100, Some([7, 40, 40, 0, 0])),
            result(Kind::SqliteFull, 200, 400, None),
        ];
        let text = render(layout, &results);
        let table: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 4, "{text}");
        let cells = |line: &str| -> Vec<String> {
            line.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        };
        assert_eq!(cells(table[0]).len(), 11);
        assert!(table[1].chars().all(|c| "|-: ".contains(c)), "{}", table[1]);
        let ours = cells(table[2]);
        assert_eq!(ours[0], Kind::Ours.label());
        assert_eq!(&ours[1..5], ["2 × 2", "200", "2000", "4.00x"]);
        assert_eq!(&ours[5..], ["0.10", "0.20", "0.20", "7", "40", "5.00"]);
        let sqlite = cells(table[3]);
        assert_eq!(&sqlite[3..5], ["500", "1.00x"]);
        assert_eq!(&sqlite[8..], ["—", "—", "—"]);
        assert!(
            text.contains(
                "multi-process: ours 2000 updates/s against SQLite FULL 500 (4.00x), p99 ack \
                 0.20 ms against 0.20 ms"
            ),
            "{text}"
        );
        assert!(
            text.contains("check: every store held all 200 keys after every round"),
            "{text}"
        );
        assert!(text.contains(": yes (ours 200; sqlite-full 200)"), "{text}");
    }

    #[test]
    fn a_lost_key_fails_the_check() {
        let layout = Layout {
            procs: 1,
            threads: 2,
            per_thread: 5,
        };
        let mut ours = result(Kind::Ours, 10, 10, Some([0, 1, 1, 0, 0]));
        ours.add(RowReport {
            updates: 10,
            wall: Duration::from_millis(10),
            held: 9,
            ..RowReport::default()
        });
        let text = render(layout, &[ours, result(Kind::SqliteFull, 10, 10, None)]);
        assert!(text.contains(": no (ours 9–10; sqlite-full 10)"), "{text}");
    }

    #[test]
    fn keys_are_new_and_entries_parse() {
        let (a, text) = key_and_entry(1, 2, 3);
        let (b, _) = key_and_entry(1, 3, 2);
        assert_ne!(a, b);
        assert_eq!(a, "hook:p1t2i3");
        let entry = Entry::parse(&text).unwrap();
        assert_eq!(entry.session_id(), Some("p1t2i3"));
    }
}
