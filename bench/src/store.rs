//! The `store` suite: the session registry at its cap under 64 tasks creating sessions, ours
//! against a model of the original and against SQLite, side by side in one run.
//!
//! The seed scenario of issue 5: a registry already at its entry cap (500, and 100,000), 64
//! tasks on a tokio runtime with 2 workers each creating new sessions one after another (an
//! upsert, three patches, four transcript appends in between), durable updates, and a 1 ms
//! ticker on the same runtime. Four stores take turns:
//!
//! - ours, `sessionkit-session-store` with `SyncMode::EveryBatch` and maintenance capping the
//!   registry, through the async API;
//! - the original's way ([`naive`]): every update re-reads, deep-copies, sorts, trims and
//!   rewrites the whole `sessions.json` with fsync under the lock;
//! - SQLite in WAL mode ([`sqlite`]) with `synchronous=FULL` and with `NORMAL`, one
//!   transaction per update.
//!
//! Every row runs in a fresh child process (this binary again, see [`work`]), so that its peak
//! memory and its I/O counters are its own; the rows of a size take turns in rounds, the first
//! one rotating. The registry is seeded once per size (not timed) and every row starts from a
//! copy of the seed.
//!
//! Another section ([`multi`]) has several processes write one durable store at once, ours
//! and SQLite `synchronous=FULL`, each process this binary again. The last ([`follow`])
//! times how ours reaches the new files after another process's compaction, at the large
//! size: following it by reading the journals, against loading the whole store again.

#[path = "store_follow.rs"]
mod follow;
#[path = "store_multi.rs"]
mod multi;
#[path = "store_naive.rs"]
mod naive;
#[path = "store_sqlite.rs"]
mod sqlite;
#[path = "store_work.rs"]
mod work;

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::args::Options;
use crate::common::{context, directory_line, machine_line, shown_command};
use crate::machine;
use crate::stall;
use crate::stats::{millis, percentile};
use crate::table::{self, Align};

/// The environment variable that makes `sessionkit-bench store` a measuring child: it holds
/// the row ([`Spec`]), and the child runs in the row's directory.
const CHILD_ENV: &str = "SESSIONKIT_BENCH_STORE_CHILD";

/// Tasks creating sessions, in every row.
const TASKS: usize = 64;
/// The ticker's worst lateness with ours must stay under this.
const GOAL_MAX_LATENESS: Duration = Duration::from_millis(5);
/// Ours must reach at least this many times the naive store's throughput.
const GOAL_VS_NAIVE: f64 = 100.0;
/// Ours must stay under this many times the snapshot's size in peak memory.
const GOAL_MEMORY: f64 = 2.0;
/// A row that waits for ours' first compaction runs at most this many times its time box.
const MAX_EXTENSION: u32 = 8;
/// The ticker alone runs at most this long per round.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// The size the goals are judged at in a full run.
const FULL_LARGE: usize = 100_000;

/// How the run is sized.
#[derive(Clone, Debug)]
struct Plan {
    mode: &'static str,
    /// The registry sizes (each the cap), small then large; the goals are judged at the large.
    sizes: [usize; 2],
    /// The time box of every row, per size.
    windows: [Duration; 2],
    /// Whether ours at the large size runs past its time box until its first compaction has
    /// finished, so that the row holds one whole cycle of the journal.
    until_compacted: bool,
    /// Every row runs once per round.
    rounds: usize,
    /// The multi-process section's rows; they take turns in as many rounds as the others.
    multi: multi::Layout,
    /// The follow section's samples of each way.
    follow_samples: usize,
}

impl Plan {
    fn new(options: &Options) -> Plan {
        let mut plan = if options.quick {
            Plan {
                mode: "quick",
                sizes: [500, 20_000],
                windows: [Duration::from_millis(1500), Duration::from_millis(2500)],
                until_compacted: false,
                rounds: 1,
                multi: multi::Layout {
                    procs: 4,
                    threads: 8,
                    per_thread: 100,
                },
                follow_samples: 2,
            }
        } else {
            Plan {
                mode: "full",
                sizes: [500, FULL_LARGE],
                windows: [Duration::from_secs(5), Duration::from_secs(15)],
                until_compacted: true,
                rounds: 2,
                multi: multi::Layout {
                    procs: 4,
                    threads: 8,
                    per_thread: 500,
                },
                follow_samples: 3,
            }
        };
        if let Some(n) = options.iters {
            plan.rounds = n;
        }
        plan
    }
}

/// Which store a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ours,
    Naive,
    SqliteFull,
    SqliteNormal,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Ours,
        Kind::Naive,
        Kind::SqliteFull,
        Kind::SqliteNormal,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Naive => "naive",
            Kind::SqliteFull => "sqlite-full",
            Kind::SqliteNormal => "sqlite-normal",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours: journal, group commit, fsync per batch",
            Kind::Naive => "naive: rewrite the file per update (the original)",
            Kind::SqliteFull => "SQLite WAL, `synchronous=FULL`",
            Kind::SqliteNormal => "SQLite WAL, `synchronous=NORMAL` (not durable)",
        }
    }

    fn is_sqlite(self) -> bool {
        matches!(self, Kind::SqliteFull | Kind::SqliteNormal)
    }
}

/// One row for a child: which store, its cap, the time box, the number of tasks, and whether
/// ours runs on until its first compaction has finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Spec {
    kind: Kind,
    cap: usize,
    window: Duration,
    tasks: usize,
    until_compacted: bool,
}

impl Spec {
    fn to_env(self) -> String {
        format!(
            "{} {} {} {} {}",
            self.kind.name(),
            self.cap,
            self.window.as_millis(),
            self.tasks,
            u8::from(self.until_compacted)
        )
    }

    fn parse(text: &str) -> io::Result<Spec> {
        let bad = || io::Error::other(format!("{CHILD_ENV}: cannot parse `{text}`"));
        let words: Vec<&str> = text.split_whitespace().collect();
        let [kind, cap, millis, tasks, until] = words[..] else {
            return Err(bad());
        };
        Ok(Spec {
            kind: Kind::from_name(kind).ok_or_else(bad)?,
            cap: cap.parse().map_err(|_| bad())?,
            window: Duration::from_millis(millis.parse().map_err(|_| bad())?),
            tasks: tasks.parse().map_err(|_| bad())?,
            until_compacted: until == "1",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// What the parent and the children share: entries, time, transcripts.

/// Milliseconds since the Unix epoch, as `Date.now()`.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Archives `<id>.jsonl` in `dir` as `<id>.jsonl.deleted.<ms>`, if it exists, as every store
/// in the suite does with the transcript of an evicted session.
#[allow(
    clippy::disallowed_methods,
    reason = "the naive and SQLite rows archive as the original does, with a bare rename"
)]
fn archive_transcript(dir: &Path, id: &str) -> io::Result<()> {
    let path = dir.join(format!("{id}.jsonl"));
    let aside = dir.join(format!("{id}.jsonl.deleted.{}", now_ms()));
    match fs::rename(&path, &aside) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A small deterministic generator (splitmix64), for ids and field values.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A random version-4-shaped UUID.
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

/// A realistic entry as compact JSON, about 600 bytes: the two required fields, 15 of
/// OpenClaw's optional ones (file, times, lineage, run status, model, usage, delivery, a label)
/// and one field of a plugin.
fn entry_text(rng: &mut Rng, session_id: &str, updated_at: i64, status: &str) -> String {
    let started = updated_at - rng.below(3_600_000) as i64;
    let (input, output) = (rng.below(200_000), rng.below(20_000));
    let phone = rng.below(100_000_000);
    format!(
        concat!(
            r#"{{"sessionId":"{sid}","updatedAt":{updated_at},"#,
            r#""sessionFile":"/home/op/.openclaw/agents/main/sessions/{sid}.jsonl","#,
            r#""sessionStartedAt":{started},"lastInteractionAt":{updated_at},"#,
            r#""spawnedBy":"agent:main:main","status":"{status}","chatType":"direct","#,
            r#""model":"claude-sonnet-4","modelProvider":"anthropic","#,
            r#""inputTokens":{input},"outputTokens":{output},"totalTokens":{total},"#,
            r#""compactionCount":{compactions},"#,
            r#""deliveryContext":{{"channel":"telegram","to":"+49151{phone:08}","accountId":"default"}},"#,
            r#""lastChannel":"telegram","label":"cron job {job}","#,
            r#""x-plugin":{{"runs":{runs},"ok":true}}}}"#
        ),
        sid = session_id,
        updated_at = updated_at,
        started = started,
        status = status,
        input = input,
        output = output,
        total = input + output,
        compactions = rng.below(4),
        phone = phone,
        job = rng.below(1000),
        runs = rng.below(500),
    )
}

// ---------------------------------------------------------------------------------------------
// The parent.

/// Runs the suite and prints its report, or, in a child, measures one row.
pub(crate) fn run_suite(options: &Options, args: &[OsString]) -> io::Result<()> {
    if let Some(spec) = std::env::var_os(CHILD_ENV) {
        return work::run_child(&spec.to_string_lossy());
    }
    if let Some(role) = std::env::var_os(multi::WRITER_ENV) {
        return multi::run_writer(&role.to_string_lossy());
    }
    if !cfg!(target_os = "linux") {
        println!("SKIP: store benchmark: it reads /proc for memory and I/O");
        return Ok(());
    }
    let plan = Plan::new(options);
    let base = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new()
        .prefix("sessionkit-bench-store-")
        .tempdir_in(&base)
        .map_err(|e| context(e, format!("create a temp dir in {}", base.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| context(e, "find this binary to start the rows".to_owned()))?;

    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:.0} s] {what}", started.elapsed().as_secs_f64());
    let mut seeds = Vec::new();
    for &size in &plan.sizes {
        progress(&format!("seeding {size} entries"));
        seeds.push(Seed::create(
            &root.path().join(format!("seed-{size}")),
            size,
        )?);
    }
    print_header(&plan, options, args, &base, root.path(), &seeds);

    let mut results: Vec<RowResult> = Vec::new();
    for (s, &size) in plan.sizes.iter().enumerate() {
        for kind in Kind::ALL {
            results.push(RowResult::new(size, s, kind));
        }
    }
    let mut idle = Vec::new();
    let mut runs = 0;
    for round in 0..plan.rounds {
        for (s, seed) in seeds.iter().enumerate() {
            let n = Kind::ALL.len();
            for k in 0..n {
                // Rotating the first row keeps any one from always following another.
                let kind = Kind::ALL[(round + k) % n];
                runs += 1;
                let dir = root.path().join(format!("run{runs}-{}", kind.name()));
                let spec = Spec {
                    kind,
                    cap: seed.entries,
                    window: plan.windows[s],
                    tasks: TASKS,
                    until_compacted: plan.until_compacted && s == 1 && kind == Kind::Ours,
                };
                progress(&format!(
                    "round {}/{}: {} entries, {}",
                    round + 1,
                    plan.rounds,
                    seed.entries,
                    kind.name()
                ));
                let report = run_row(&exe, seed, &dir, spec)?;
                progress(&format!(
                    "  {} updates in {:.1} s ({:.0}/s), p99 {:.2} ms, peak {} MiB, ticker max {:.2} ms",
                    report.updates,
                    report.wall.as_secs_f64(),
                    report.updates as f64 / report.wall.as_secs_f64(),
                    millis(percentile(&report.latency, 99.0)),
                    report.hwm_kib / 1024,
                    millis(max(&report.lateness))
                ));
                // The worst tick of a run grows with its length on a VM that stalls now and
                // then, so the baseline runs as long as the row it is held against, right
                // after it.
                let baseline = (kind == Kind::Ours && s == 1).then(|| report.wall.min(MAX_IDLE));
                let row = results
                    .iter_mut()
                    .find(|r| r.size_index == s && r.kind == kind)
                    .ok_or_else(|| io::Error::other("no result slot"))?;
                row.add(report);
                if let Some(duration) = baseline {
                    progress(&format!(
                        "round {}/{}: the ticker alone for {:.1} s",
                        round + 1,
                        plan.rounds,
                        duration.as_secs_f64()
                    ));
                    let ticks = idle_ticker(duration)?;
                    progress(&format!("  ticker max {:.2} ms", millis(max(&ticks))));
                    idle.extend(ticks);
                }
                // The row's directory stays until the end: ext4 skips the inodes of files
                // deleted in the last minute or so when it creates new ones, so removing
                // thousands of files here would slow the file creations of the next rows.
            }
        }
    }
    let mut multi_results: Vec<multi::MultiResult> = multi::KINDS
        .into_iter()
        .map(multi::MultiResult::new)
        .collect();
    for round in 0..plan.rounds {
        let n = multi::KINDS.len();
        for k in 0..n {
            let kind = multi::KINDS[(round + k) % n];
            runs += 1;
            let dir = root.path().join(format!("run{runs}-multi-{}", kind.name()));
            let layout = plan.multi;
            progress(&format!(
                "round {}/{}: {} processes × {} threads × {} upserts, {}",
                round + 1,
                plan.rounds,
                layout.procs,
                layout.threads,
                layout.per_thread,
                kind.name()
            ));
            let report = multi::run_row(&exe, &dir, kind, layout)?;
            progress(&format!(
                "  {:.1} s ({:.0}/s), p99 {:.2} ms",
                report.wall().as_secs_f64(),
                report.rate(),
                millis(report.p99())
            ));
            multi_results
                .iter_mut()
                .find(|r| r.kind == kind)
                .ok_or_else(|| io::Error::other("no result slot"))?
                .add(report);
        }
    }
    let large = &seeds[1];
    progress(&format!(
        "following compactions at {} entries: {} samples of each way",
        large.entries, plan.follow_samples
    ));
    runs += 1;
    let followed = follow::run(
        &large.dir.join("sessions.json"),
        &root.path().join(format!("run{runs}-follow")),
        large.entries,
        plan.follow_samples,
    )?;
    progress(&format!("  {}", followed.summary()));
    print_report(&plan, &seeds, &results, &idle);
    print!("{}", multi::render(plan.multi, &multi_results));
    println!();
    print!("{}", followed.render());
    progress("done");
    root.close()
        .map_err(|e| context(e, "remove the benchmark's temp dir".to_owned()))
}

fn print_header(
    plan: &Plan,
    options: &Options,
    args: &[OsString],
    base: &Path,
    root: &Path,
    seeds: &[Seed],
) {
    let shown = shown_command(args);
    println!("**sessionkit-bench store**\n");
    println!("- command: `sessionkit-bench {shown}` (what `cargo xtask bench {shown}` runs)");
    if plan.sizes[1] == FULL_LARGE {
        println!("- mode: {}", plan.mode);
    } else {
        println!(
            "- mode: {}, with {} entries instead of {FULL_LARGE} as the large size, so that \
             seeding and the naive rewrites take seconds; judge the goals on a full run",
            plan.mode, plan.sizes[1]
        );
    }
    println!(
        "- machine: {}, 1-minute load average {} at the start",
        machine_line(),
        machine::load_average()
    );
    println!("- directory: {}", directory_line(options, base, root));
    let sizes: Vec<String> = seeds
        .iter()
        .map(|s| {
            format!(
                "{} entries (`sessions.json` {}, `sessions.db` {})",
                s.entries,
                fmt_bytes(s.json_bytes),
                fmt_bytes(s.db_bytes)
            )
        })
        .collect();
    println!(
        "- registry: at its cap, seeded with {} of about {} bytes each (compact JSON; \
         `sessionId`, `updatedAt`, 15 of OpenClaw's optional fields and a plugin's), `updatedAt` spread \
         over the last 7 days; the seed is written once per size (not timed) and every row \
         starts from a copy; no transcripts are seeded",
        sizes.join(" and "),
        seeds.first().map_or(0, |s| s.entry_bytes)
    );
    println!(
        "- workload: {TASKS} tasks on a tokio runtime with 2 workers, each creating sessions \
         one after another for the row's time box ({}): an upsert of a new entry (about 600 \
         bytes), then three merge patches (about 100 bytes each); after each of the first \
         three updates the session's transcript gets its write lock (`Locker`), one or two \
         appends of about 300 bytes, and is released after the fourth append, on \
         `spawn_blocking` with at most {} such calls in flight (atomic-fs's default cap); no update \
         starts after the time box, and one still waiting for the naive store's or SQLite's \
         lock then gives up and is not counted",
        plan.sizes
            .iter()
            .zip(&plan.windows)
            .map(|(n, w)| format!("{:.1} s at {n} entries", w.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        sessionkit_atomic_fs::tokio::default_blocking_limit()
    );
    println!(
        "- ours: `Store::builder().sync(SyncMode::EveryBatch).maintenance(Maintenance::new()\
         .max_entries(Some(cap)))` (background passes on, compaction at its defaults: 1 MiB \
         and 1.0x the snapshot), `upsert_async` / `patch_async`, transcripts through \
         `Store::open_transcript` (the sync call, on `spawn_blocking` like the other rows' \
         transcripts, so that every row does the same transcript work){}",
        if plan.until_compacted {
            format!(
                "; at {} entries its rows run past the time box until the first compaction \
                 has finished",
                plan.sizes[1]
            )
        } else {
            String::new()
        }
    );
    println!(
        "- naive: a model of the original's v1 writer: an in-process FIFO queue (a tokio \
         mutex), then on `spawn_blocking` under the session write lock on `sessions.json`: \
         read and parse the whole file, deep-copy it, apply the update, prune and cap by \
         sorting every entry by `updatedAt`, archive evicted transcripts, pretty-print, write a \
         temp file, fsync, rename, fsync the directory"
    );
    println!(
        "- SQLite: bundled SQLite through rusqlite, WAL mode, one connection behind a FIFO \
         queue, each update one `BEGIN IMMEDIATE` transaction on `spawn_blocking`; a new key \
         past the cap deletes the oldest row (by an index on `updated_at`) in the same \
         transaction; a patch is `json_patch` in SQL; `FULL` fsyncs the WAL at every commit, \
         `NORMAL` only at checkpoints (a power loss may lose the last commits)"
    );
    println!(
        "- rounds: {} (every row once per round, in a fresh child process, the first row \
         rotating); the ticker alone runs right after ours' row at {} entries, on a fresh \
         runtime in this process, for as long as that row ran (at most {} s), so that its worst \
         tick is taken over as many ticks",
        plan.rounds,
        plan.sizes[1],
        MAX_IDLE.as_secs()
    );
    println!("{}", multi::header_line(plan.multi));
    println!();
}

/// A registry seeded for one size: `sessions.json` (pretty, as OpenClaw writes it) and
/// `sessions.db` (SQLite), holding the same entries.
#[derive(Debug)]
struct Seed {
    dir: PathBuf,
    entries: usize,
    json_bytes: u64,
    db_bytes: u64,
    /// The compact size of one entry, on average.
    entry_bytes: u64,
}

impl Seed {
    fn create(dir: &Path, entries: usize) -> io::Result<Seed> {
        fs::create_dir_all(dir).map_err(|e| context(e, format!("create {}", dir.display())))?;
        let now = now_ms();
        let week = 7 * 24 * 3_600_000_i64;
        let generate = || {
            let mut rng = Rng::new(entries as u64);
            (0..entries).map(move |i| {
                let id = rng.uuid();
                // Oldest first, evenly over the last week.
                let at = now - week + week * i as i64 / entries.max(1) as i64;
                let text = entry_text(&mut rng, &id, at, "done");
                (format!("hook:{id}"), id, at, text)
            })
        };
        let json = dir.join("sessions.json");
        let mut out = BufWriter::new(File::create(&json)?);
        out.write_all(b"{")?;
        let mut compact = 0u64;
        for (i, (key, _, _, text)) in generate().enumerate() {
            compact += text.len() as u64;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(io::Error::other)?;
            let pretty = serde_json::to_string_pretty(&value).map_err(io::Error::other)?;
            let sep = if i == 0 { "\n  " } else { ",\n  " };
            write!(out, "{sep}{key:?}: {}", pretty.replace('\n', "\n  "))?;
        }
        out.write_all(b"\n}\n")?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let db = dir.join(sqlite::DB_NAME);
        sqlite::create(&db, generate())?;
        File::open(&db)?.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(Seed {
            dir: dir.to_path_buf(),
            entries,
            json_bytes: fs::metadata(&json)?.len(),
            db_bytes: fs::metadata(&db)?.len(),
            entry_bytes: compact / entries.max(1) as u64,
        })
    }
}

/// Prepares `dir` from the seed, runs the row in a child, and parses its report.
fn run_row(exe: &Path, seed: &Seed, dir: &Path, spec: Spec) -> io::Result<ChildReport> {
    fs::create_dir(dir).map_err(|e| context(e, format!("create {}", dir.display())))?;
    if spec.kind.is_sqlite() {
        // SQLite writes its database in place, so it gets a copy, flushed to disk.
        let copy = dir.join(sqlite::DB_NAME);
        fs::copy(seed.dir.join(sqlite::DB_NAME), &copy)?;
        File::open(&copy)?.sync_all()?;
    } else {
        // Ours and the naive store only ever replace `sessions.json` by a rename, so a hard
        // link is as good as a copy, and leaves no dirty pages behind.
        let json = dir.join("sessions.json");
        if fs::hard_link(seed.dir.join("sessions.json"), &json).is_err() {
            fs::copy(seed.dir.join("sessions.json"), &json)?;
            File::open(&json)?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()?;
    let output = Command::new(exe)
        .arg("store")
        .env(CHILD_ENV, spec.to_env())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| context(e, format!("start {} store", exe.display())))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "the {} row with {} entries failed: {}",
            spec.kind.name(),
            spec.cap,
            output.status
        )));
    }
    ChildReport::parse(&String::from_utf8_lossy(&output.stdout))
}

/// The ticker alone on a fresh runtime for `duration`.
fn idle_ticker(duration: Duration) -> io::Result<Vec<Duration>> {
    let runtime = stall::two_worker_runtime()?;
    runtime.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn(stall::tick_until(done.clone()));
        tokio::time::sleep(duration).await;
        done.store(true, Ordering::Relaxed);
        ticker.await.map_err(io::Error::other)
    })
}

/// What a child reported about one row.
#[derive(Clone, Debug, Default)]
struct ChildReport {
    updates: u64,
    sessions: u64,
    gave_up: u64,
    wall: Duration,
    write_bytes: u64,
    wchar: u64,
    log_write_bytes: u64,
    log_wchar: u64,
    hwm_kib: u64,
    rss_before_kib: u64,
    rss_end_kib: u64,
    entries: u64,
    entries_after_pass: Option<u64>,
    rewritten: u64,
    /// Ours: batches, updates, journal bytes, fsyncs, compactions, snapshot bytes, reloads.
    counters: Option<[u64; 7]>,
    latency: Vec<Duration>,
    lateness: Vec<Duration>,
}

impl ChildReport {
    fn parse(text: &str) -> io::Result<ChildReport> {
        let mut r = ChildReport::default();
        let bad = |line: &str| io::Error::other(format!("a row reported `{line:.80}`"));
        for line in text.lines() {
            let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
            let num = || rest.trim().parse::<u64>().map_err(|_| bad(line));
            let nanos = || -> io::Result<Vec<Duration>> {
                rest.split_whitespace()
                    .map(|w| w.parse().map(Duration::from_nanos).map_err(|_| bad(line)))
                    .collect()
            };
            match name {
                "updates" => r.updates = num()?,
                "sessions" => r.sessions = num()?,
                "gave_up" => r.gave_up = num()?,
                "wall_ns" => r.wall = Duration::from_nanos(num()?),
                "write_bytes" => r.write_bytes = num()?,
                "wchar" => r.wchar = num()?,
                "log_write_bytes" => r.log_write_bytes = num()?,
                "log_wchar" => r.log_wchar = num()?,
                "hwm_kib" => r.hwm_kib = num()?,
                "rss_before_kib" => r.rss_before_kib = num()?,
                "rss_end_kib" => r.rss_end_kib = num()?,
                "entries" => r.entries = num()?,
                "entries_after_pass" => r.entries_after_pass = Some(num()?),
                "rewritten" => r.rewritten = num()?,
                "counters" => {
                    let values: Vec<u64> = rest
                        .split_whitespace()
                        .map(|w| w.parse().map_err(|_| bad(line)))
                        .collect::<io::Result<_>>()?;
                    r.counters = Some(values.try_into().map_err(|_| bad(line))?);
                }
                "latency_ns" => r.latency = nanos()?,
                "lateness_ns" => r.lateness = nanos()?,
                _ => return Err(bad(line)),
            }
        }
        if r.wall.is_zero() {
            return Err(io::Error::other("a row reported nothing"));
        }
        Ok(r)
    }
}

/// All rounds of one row.
#[derive(Debug)]
struct RowResult {
    size: usize,
    size_index: usize,
    kind: Kind,
    total: ChildReport,
    /// The fewest entries any round ended with, and the most.
    entries: (u64, u64),
    /// Ours: the most entries any round held after one more maintenance pass.
    entries_after_pass: Option<u64>,
    rounds: usize,
}

impl RowResult {
    fn new(size: usize, size_index: usize, kind: Kind) -> RowResult {
        RowResult {
            size,
            size_index,
            kind,
            total: ChildReport::default(),
            entries: (u64::MAX, 0),
            entries_after_pass: None,
            rounds: 0,
        }
    }

    fn add(&mut self, r: ChildReport) {
        let t = &mut self.total;
        t.updates += r.updates;
        t.sessions += r.sessions;
        t.gave_up += r.gave_up;
        t.wall += r.wall;
        t.write_bytes += r.write_bytes;
        t.wchar += r.wchar;
        t.log_write_bytes += r.log_write_bytes;
        t.log_wchar += r.log_wchar;
        t.hwm_kib = t.hwm_kib.max(r.hwm_kib);
        t.rss_before_kib = t.rss_before_kib.max(r.rss_before_kib);
        t.rss_end_kib = t.rss_end_kib.max(r.rss_end_kib);
        t.rewritten += r.rewritten;
        if let Some(c) = r.counters {
            let sum = t.counters.get_or_insert([0; 7]);
            for (s, v) in sum.iter_mut().zip(c) {
                *s += v;
            }
        }
        t.latency.extend(r.latency);
        t.lateness.extend(r.lateness);
        self.entries = (self.entries.0.min(r.entries), self.entries.1.max(r.entries));
        if let Some(n) = r.entries_after_pass {
            self.entries_after_pass = Some(self.entries_after_pass.unwrap_or(0).max(n));
        }
        self.rounds += 1;
    }

    fn rate(&self) -> f64 {
        self.total.updates as f64 / self.total.wall.as_secs_f64().max(1e-9)
    }

    /// Bytes the registry sent to storage per update: the process's `write_bytes` less the
    /// transcripts' own.
    fn registry_bytes_per_update(&self) -> f64 {
        let t = &self.total;
        t.write_bytes.saturating_sub(t.log_write_bytes) as f64 / t.updates.max(1) as f64
    }

    fn max_lateness(&self) -> Duration {
        max(&self.total.lateness)
    }
}

fn max(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().unwrap_or_default()
}

fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "no" }
}

/// How far past the cap ours' maintenance lets the count go before a pass evicts
/// (`Maintenance::max_entries`).
fn slack(cap: usize) -> usize {
    if cap <= 49 { 1 } else { (cap / 10).max(25) }
}

/// Bytes as B, KB or MB (powers of 1000), for sizes.
fn fmt_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} KB", n / 1e3)
    } else {
        format!("{n:.0} B")
    }
}

/// A rate or a size per update, with a decimal only where it still matters.
fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A ratio, with enough decimals to tell a small one from zero.
fn fmt_ratio(x: f64) -> String {
    if x < 0.01 {
        format!("{x:.4}x")
    } else {
        format!("{}x", fmt_num(x))
    }
}

/// Milliseconds with two decimals under 100 ms.
fn fmt_ms(d: Duration) -> String {
    let ms = millis(d);
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.2}")
    }
}

fn print_report(plan: &Plan, seeds: &[Seed], results: &[RowResult], idle: &[Duration]) {
    let headers = [
        ("entries", Align::Right),
        ("store", Align::Left),
        ("updates", Align::Right),
        ("updates/s", Align::Right),
        ("vs FULL", Align::Right),
        ("p50 ack (ms)", Align::Right),
        ("p99 ack (ms)", Align::Right),
        ("written/update", Align::Right),
        ("peak RSS", Align::Right),
        ("ticker max (ms)", Align::Right),
        ("ticker p99 (ms)", Align::Right),
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut footnote_naive = Vec::new();
    for r in results {
        let full = results
            .iter()
            .find(|f| f.size == r.size && f.kind == Kind::SqliteFull)
            .map_or(1.0, RowResult::rate);
        let t = &r.total;
        let mut p50 = fmt_ms(percentile(&t.latency, 50.0));
        let mut p99 = fmt_ms(percentile(&t.latency, 99.0));
        // With fewer than two updates per task and round, the time box ended before the queue
        // reached its steady state: the samples are the first updates after a simultaneous
        // start.
        if r.kind == Kind::Naive && t.updates < (2 * TASKS * r.rounds.max(1)) as u64 {
            p50 = format!("≥ {p50} ¹");
            p99 = format!("≥ {p99} ¹");
            let service = t.wall.as_secs_f64() / t.updates.max(1) as f64;
            let queued = t.gave_up as f64 / r.rounds.max(1) as f64;
            footnote_naive.push((r.size, t.updates, r.rounds, queued, service));
        }
        rows.push(vec![
            r.size.to_string(),
            r.kind.label().to_owned(),
            t.updates.to_string(),
            fmt_num(r.rate()),
            fmt_ratio(r.rate() / full),
            p50,
            p99,
            fmt_bytes(r.registry_bytes_per_update() as u64),
            format!("{:.0} MiB", t.hwm_kib as f64 / 1024.0),
            fmt_ms(r.max_lateness()),
            fmt_ms(percentile(&t.lateness, 99.0)),
        ]);
    }
    rows.push(vec![
        "—".to_owned(),
        "none (the ticker alone, baseline)".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
        fmt_ms(max(idle)),
        fmt_ms(percentile(idle, 99.0)),
    ]);
    println!(
        "**The registry at its cap: {TASKS} tasks creating sessions, durable updates, a 1 ms \
         ticker on the same 2 workers**\n"
    );
    print!("{}", table::render(&headers, &rows));
    println!();
    println!(
        "Updates/s is every acknowledged update of all rounds over the rows' summed wall \
         time; vs FULL is that rate over SQLite `synchronous=FULL`'s at the same size. An \
         acknowledgement's latency runs from the call to its answer, waiting for a lock \
         included. Written/update is what the registry sent to storage per update: the \
         process's `write_bytes` (`/proc/self/io`, counted page by page as the page cache \
         gets dirty, the same yardstick for every row) less the transcripts' own (measured on \
         the threads that appended). Peak RSS is the child process's `VmHWM`, the largest of \
         its rounds, loading the registry included. The 1-minute load average was {} at the \
         end.",
        machine::load_average()
    );
    for (size, updates, rounds, queued, service) in footnote_naive {
        println!();
        println!(
            "¹ The naive store at {size} entries completed only {updates} updates in {} before \
             its time box ended, with {queued:.0} of the {TASKS} tasks still queued on average; \
             these latencies are of the first updates after all tasks started at once, so they \
             are lower bounds. In the steady state every update waits for the {} queued ahead \
             of it: about {TASKS} × {:.2} s = {:.0} s.",
            if rounds == 1 {
                "1 round".to_owned()
            } else {
                format!("{rounds} rounds")
            },
            TASKS - 1,
            service,
            TASKS as f64 * service
        );
    }
    println!();
    print_ours(plan, seeds, results);
    print_transcripts(results);
    print_checks(plan, seeds, results, idle);
}

/// Ours in detail: group commit, compaction and memory.
fn print_ours(plan: &Plan, seeds: &[Seed], results: &[RowResult]) {
    let headers = [
        ("entries", Align::Right),
        ("wall (s)", Align::Right),
        ("batches (= fsyncs)", Align::Right),
        ("updates/batch", Align::Right),
        ("journal B/update", Align::Right),
        ("compactions", Align::Right),
        ("(journal + snapshot)/update", Align::Right),
        ("slowest ack (ms)", Align::Right),
        ("RSS before open", Align::Right),
        ("RSS at the end", Align::Right),
        ("peak RSS", Align::Right),
        ("snapshot", Align::Right),
    ];
    let mib = |kib: u64| format!("{:.0} MiB", kib as f64 / 1024.0);
    let rows: Vec<Vec<String>> = results
        .iter()
        .filter(|r| r.kind == Kind::Ours)
        .filter_map(|r| {
            let [batches, updates, journal, _, compactions, snapshot, _] = r.total.counters?;
            let json = seeds.get(r.size_index).map_or(0, |s| s.json_bytes);
            Some(vec![
                r.size.to_string(),
                format!("{:.1}", r.total.wall.as_secs_f64()),
                batches.to_string(),
                fmt_num(updates as f64 / batches.max(1) as f64),
                fmt_num(journal as f64 / updates.max(1) as f64),
                compactions.to_string(),
                fmt_bytes((journal + snapshot) / updates.max(1)),
                fmt_ms(max(&r.total.latency)),
                mib(r.total.rss_before_kib),
                mib(r.total.rss_end_kib),
                mib(r.total.hwm_kib),
                fmt_bytes(json),
            ])
        })
        .collect();
    println!("**Ours in detail (`Store::counters()` and `/proc/self/status`, all rounds)**\n");
    print!("{}", table::render(&headers, &rows));
    println!();
    let waited = if plan.until_compacted {
        format!(
            "At {} entries ours runs past the time box until its first compaction has finished \
             (at most {MAX_EXTENSION} times the time box), so that its rows hold one whole cycle \
             of the journal; ",
            plan.sizes[1]
        )
    } else {
        format!(
            "In this mode ours at {} entries stops at the time box, usually before its first \
             compaction, so its bytes per update are the journal's alone; ",
            plan.sizes[1]
        )
    };
    println!(
        "Updates counts maintenance's eviction records too. Compaction rewrites the snapshot \
         once the journal reaches the larger of 1 MiB and the snapshot's size. {waited}the \
         memory columns are the largest of the rounds, and the RSS before open is the process \
         with its runtime, before the store was opened."
    );
    println!();
}

/// The transcripts' share, the same work in every row.
fn print_transcripts(results: &[RowResult]) {
    let (wchar, pages, updates) = results.iter().fold((0, 0, 0), |acc, r| {
        (
            acc.0 + r.total.log_wchar,
            acc.1 + r.total.log_write_bytes,
            acc.2 + r.total.updates,
        )
    });
    println!(
        "The transcripts (four appends per session, each session's write lock taken once) \
         wrote {:.0} bytes per update in system calls and {:.0} bytes per update to the page \
         cache, averaged over all rows; they are the same work in every row and are left out \
         of written/update.",
        wchar as f64 / updates.max(1) as f64,
        pages as f64 / updates.max(1) as f64
    );
    println!();
}

fn print_checks(plan: &Plan, seeds: &[Seed], results: &[RowResult], idle: &[Duration]) {
    // Every store must hold the registry at its cap: the others exactly, ours after a pass at
    // most at the cap plus its slack (a pass starts past cap + slack and evicts down to the
    // cap, so between passes the count may run past the slack by what arrives meanwhile).
    let capped = results.iter().all(|r| match r.kind {
        Kind::Ours => r
            .entries_after_pass
            .is_some_and(|n| n <= (r.size + slack(r.size)) as u64),
        _ => r.entries == (r.size as u64, r.size as u64),
    });
    let range = |(lo, hi): (u64, u64)| {
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}–{hi}")
        }
    };
    let spread: Vec<String> = results
        .iter()
        .map(|r| match r.entries_after_pass {
            Some(after) => format!(
                "{} {}: {} at the end, {after} after one more pass",
                r.kind.name(),
                r.size,
                range(r.entries)
            ),
            None => format!("{} {}: {}", r.kind.name(), r.size, range(r.entries)),
        })
        .collect();
    println!(
        "check: every store held the registry at its cap (ours: at most the cap plus its slack \
         of 10 %, at least 25, after one more maintenance pass): {} ({})",
        yes_no(capped),
        spread.join("; ")
    );
    let large = plan.sizes[1];
    let find = |kind: Kind| results.iter().find(|r| r.size == large && r.kind == kind);
    let (Some(ours), Some(naive), Some(full)) =
        (find(Kind::Ours), find(Kind::Naive), find(Kind::SqliteFull))
    else {
        return;
    };
    let vs_full = ours.rate() / full.rate().max(1e-9);
    println!(
        "goal: durable throughput at least SQLite `synchronous=FULL`'s at {large} entries: {} \
         ({} against {} updates/s, {}x)",
        yes_no(vs_full >= 1.0),
        fmt_num(ours.rate()),
        fmt_num(full.rate()),
        fmt_num(vs_full)
    );
    let vs_naive = ours.rate() / naive.rate().max(1e-9);
    println!(
        "goal: at least {GOAL_VS_NAIVE:.0}x the naive store's throughput at {large} entries: {} \
         ({}x: {} against {} updates/s)",
        yes_no(vs_naive >= GOAL_VS_NAIVE),
        fmt_num(vs_naive),
        fmt_num(ours.rate()),
        fmt_num(naive.rate())
    );
    println!(
        "goal: ticker max lateness under {} ms with ours at {large} entries: {} ({} ms; the \
         ticker alone, as long right after it: {} ms)",
        GOAL_MAX_LATENESS.as_millis(),
        yes_no(ours.max_lateness() < GOAL_MAX_LATENESS),
        fmt_ms(ours.max_lateness()),
        fmt_ms(max(idle))
    );
    let snapshot = seeds.get(1).map_or(1, |s| s.json_bytes);
    let peak = ours.total.hwm_kib * 1024;
    let ratio = peak as f64 / snapshot as f64;
    println!(
        "goal: ours' peak memory under {GOAL_MEMORY:.0}x the snapshot's size at {large} entries: \
         {} ({} peak RSS against a {} snapshot, {:.2}x; {} at the end of the run, {} before \
         the store was opened)",
        yes_no(ratio < GOAL_MEMORY),
        fmt_bytes(peak),
        fmt_bytes(snapshot),
        ratio,
        fmt_bytes(ours.total.rss_end_kib * 1024),
        fmt_bytes(ours.total.rss_before_kib * 1024)
    );
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        for kind in Kind::ALL {
            let spec = Spec {
                kind,
                cap: 500,
                window: Duration::from_millis(1500),
                tasks: 64,
                until_compacted: kind == Kind::Ours,
            };
            assert_eq!(Spec::parse(&spec.to_env()).unwrap(), spec);
        }
        assert!(Spec::parse("ours 500").is_err());
        assert!(Spec::parse("other 500 1 1 0").is_err());
    }

    #[test]
    fn entries_are_realistic() {
        let mut rng = Rng::new(7);
        let id = rng.uuid();
        assert_eq!(id.len(), 36);
        let text = entry_text(&mut rng, &id, 1_700_000_000_000, "done");
        assert!((550..700).contains(&text.len()), "{} bytes", text.len());
        let entry = sessionkit_session_store::Entry::parse(&text).unwrap();
        assert_eq!(entry.session_id(), Some(id.as_str()));
        assert_eq!(entry.updated_at(), Some(1_700_000_000_000));
    }

    #[test]
    fn child_reports_parse() {
        let text = "updates 3\nwall_ns 1000\nhwm_kib 5\ncounters 1 2 3 4 5 6 7\n\
                    latency_ns 1 2 3\nlateness_ns\n";
        let r = ChildReport::parse(text).unwrap();
        assert_eq!(r.updates, 3);
        assert_eq!(r.counters, Some([1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(r.latency.len(), 3);
        assert!(r.lateness.is_empty());
        assert!(ChildReport::parse("bogus 1\n").is_err());
    }

    #[test]
    fn a_seed_is_the_same_registry_in_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed::create(&dir.path().join("seed"), 20).unwrap();
        let state =
            sessionkit_session_store::load_snapshot(seed.dir.join("sessions.json")).unwrap();
        assert_eq!(state.len(), 20);
        let store = sqlite::SqliteStore::open(&seed.dir, 20, sqlite::Synchronous::Full).unwrap();
        assert_eq!(store.rows(), 20);
    }
}
