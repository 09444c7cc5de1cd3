//! The `atomic` suite: whole-file atomic replacement, five ways, side by side in one run.
//!
//! Every cell of the matrix (payload × durability × threads) runs every implementation in
//! rounds, rotating which one goes first, so that disk and machine noise lands on all of them
//! alike. The stall probe ([`crate::stall`]) and the write-behind probe ([`crate::behind`])
//! run before the matrix and are reported after it.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use atomic_write_file::AtomicWriteFile;
use sessionkit_atomic_fs::{AtomicWriter, Durability};
use tempfile::NamedTempFile;
use tokio::runtime::Runtime;

use crate::args::Options;
use crate::behind::{self, BehindPlan};
use crate::common::{context, directory_line, fmt_micros, machine_line, shown_command};
use crate::stall::{self, ProbePlan};
use crate::stats::{median, micros};
use crate::table::{self, Align};

/// Ours must stay within this factor of the hand-written floor in every row.
const GOAL_RATIO: f64 = 1.10;

/// How many measured writes each thread does, and how the stall probe is sized.
#[derive(Clone, Copy, Debug)]
struct Plan {
    mode: &'static str,
    /// Measured writes per thread per implementation in a cell that costs about a millisecond
    /// a write: the durable cells and the 1 MiB atomic-only ones.
    iters: usize,
    /// The same for the 4 KiB atomic-only cells, roughly ten times cheaper per write.
    cheap_iters: usize,
    /// The measured writes of a cell are spread over this many rounds.
    rounds: usize,
    /// Unmeasured writes per thread per implementation before a cell's rounds.
    warmup: usize,
    probe: ProbePlan,
    behind: BehindPlan,
}

impl Plan {
    fn new(options: &Options) -> Plan {
        let mut plan = if options.quick {
            Plan {
                mode: "quick",
                iters: 30,
                cheap_iters: 300,
                rounds: 5,
                warmup: 2,
                probe: ProbePlan {
                    tasks: 64,
                    writes: 96,
                    idle: Duration::from_millis(500),
                    rounds: 2,
                },
                behind: BehindPlan {
                    bytes: 32 << 20,
                    rounds: 2,
                },
            }
        } else {
            Plan {
                mode: "full",
                iters: 1800,
                cheap_iters: 18000,
                rounds: 20,
                warmup: 10,
                probe: ProbePlan {
                    tasks: 64,
                    writes: 320,
                    idle: Duration::from_secs(2),
                    rounds: 5,
                },
                // About the snapshot of a store of 100,000 entries.
                behind: BehindPlan {
                    bytes: 80 << 20,
                    rounds: 6,
                },
            }
        };
        if let Some(n) = options.iters {
            plan.iters = n;
            plan.cheap_iters = n;
            // A round needs at least one write.
            plan.rounds = plan.rounds.min(n);
        }
        plan
    }

    fn iters(&self, cell: Cell) -> usize {
        if cell.durable() || cell.payload >= 1 << 20 {
            self.iters
        } else {
            self.cheap_iters
        }
    }
}

/// One row of the matrix.
#[derive(Clone, Copy, Debug)]
struct Cell {
    payload: usize,
    durability: Durability,
    threads: usize,
}

impl Cell {
    fn all() -> Vec<Cell> {
        let mut cells = Vec::new();
        for payload in [4 << 10, 1 << 20] {
            for durability in [Durability::Durable, Durability::AtomicOnly] {
                for threads in [1, 8] {
                    cells.push(Cell {
                        payload,
                        durability,
                        threads,
                    });
                }
            }
        }
        cells
    }

    fn payload_label(self) -> String {
        if self.payload >= 1 << 20 {
            format!("{} MiB", self.payload >> 20)
        } else {
            format!("{} KiB", self.payload >> 10)
        }
    }

    fn durability_label(self) -> &'static str {
        match self.durability {
            Durability::Durable => "durable",
            Durability::AtomicOnly => "atomic-only",
        }
    }

    fn threads_label(self) -> String {
        match self.threads {
            1 => "1 thread".to_owned(),
            n => format!("{n} threads"),
        }
    }

    fn durable(self) -> bool {
        self.durability.is_durable()
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {}",
            self.payload_label(),
            self.durability_label(),
            self.threads_label()
        )
    }
}

/// The implementations, in column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Imp {
    Floor,
    Tempfile,
    AtomicWriteFile,
    OursSync,
    OursTokio,
}

impl Imp {
    const ALL: [Imp; 5] = [
        Imp::Floor,
        Imp::Tempfile,
        Imp::AtomicWriteFile,
        Imp::OursSync,
        Imp::OursTokio,
    ];

    fn header(self) -> &'static str {
        match self {
            Imp::Floor => "(a) floor",
            Imp::Tempfile => "(b) tempfile",
            Imp::AtomicWriteFile => "(c) atomic-write-file",
            Imp::OursSync => "(d) ours sync",
            Imp::OursTokio => "(e) ours tokio",
        }
    }

    /// atomic-write-file always syncs on commit, so it has no atomic-only mode to measure.
    fn runs_in(self, cell: Cell) -> bool {
        self != Imp::AtomicWriteFile || cell.durable()
    }
}

impl fmt::Display for Imp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header())
    }
}

/// The medians of one cell, one per implementation (`None` where it does not apply).
#[derive(Clone, Debug)]
struct Row {
    cell: Cell,
    medians: [Option<Duration>; 5],
}

impl Row {
    fn median(&self, imp: Imp) -> Option<Duration> {
        self.medians[imp as usize]
    }

    /// Ours sync over the floor.
    fn ours_ratio(&self) -> Option<f64> {
        Some(micros(self.median(Imp::OursSync)?) / micros(self.median(Imp::Floor)?))
    }
}

/// Runs the suite and prints its report to stdout.
pub(crate) fn run_suite(options: &Options, args: &[OsString]) -> io::Result<()> {
    let plan = Plan::new(options);
    let base = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new()
        .prefix("sessionkit-bench-")
        .tempdir_in(&base)
        .map_err(|e| context(e, format!("create a temp dir in {}", base.display())))?;
    print_header(&plan, options, args, &base, root.path());

    let started = Instant::now();
    // The probe goes first: the matrix leaves gigabytes of dirty pages whose write-back would
    // compete with the ticker for the CPUs.
    let probes = stall::run(&plan.probe, &root.path().join("stall"))?;
    let behind = behind::run(&plan.behind, &root.path().join("behind"))?;
    let bench = Bench::new(root.path().join("matrix"))?;
    let mut rows = Vec::new();
    let cells = Cell::all();
    for (i, cell) in cells.iter().enumerate() {
        eprintln!(
            "[{:.0} s] cell {}/{}: {cell}",
            started.elapsed().as_secs_f64(),
            i + 1,
            cells.len()
        );
        rows.push(bench.measure(*cell, &plan)?);
    }
    eprintln!("[{:.0} s] done", started.elapsed().as_secs_f64());
    print_matrix(&rows);
    println!("{}", stall::report(&plan.probe, &probes));
    println!("{}", behind::report(&plan.behind, &behind));
    root.close()
        .map_err(|e| context(e, "remove the benchmark's temp dir".to_owned()))
}

fn print_header(plan: &Plan, options: &Options, args: &[OsString], base: &Path, root: &Path) {
    let shown = shown_command(args);
    println!("**sessionkit-bench atomic**\n");
    println!("- command: `sessionkit-bench {shown}` (what `cargo xtask bench {shown}` runs)");
    println!("- mode: {}", plan.mode);
    println!("- machine: {}", machine_line());
    println!("- directory: {}", directory_line(options, base, root));
    println!(
        "- iterations: every implementation does {} measured writes per thread in each 4 KiB \
         atomic-only cell and {} in every other cell, in {} interleaved rounds after {} warm-up \
         writes per thread; the 8-thread cells pool the samples of all 8 threads",
        plan.cheap_iters, plan.iters, plan.rounds, plan.warmup
    );
    println!(
        "- stall probe: {} tasks × {} durable 4 KiB writes in each variant and {:.1} s of idle \
         baseline, in {} interleaved rounds",
        plan.probe.tasks,
        plan.probe.writes,
        plan.probe.idle.as_secs_f64(),
        plan.probe.rounds
    );
    println!(
        "- write-behind probe: a {} MiB durable write beside a journal's syncs, with \
         write-behind and without, in {} interleaved rounds",
        plan.behind.bytes >> 20,
        plan.behind.rounds
    );
    println!();
}

fn print_matrix(rows: &[Row]) {
    let mut headers = vec![
        ("payload", Align::Left),
        ("durability", Align::Left),
        ("threads", Align::Right),
    ];
    headers.extend(Imp::ALL.iter().map(|imp| (imp.header(), Align::Right)));
    let mut lines = Vec::new();
    for row in rows {
        let mut line = vec![
            row.cell.payload_label(),
            row.cell.durability_label().to_owned(),
            row.cell.threads.to_string(),
        ];
        let floor = row.median(Imp::Floor);
        for imp in Imp::ALL {
            line.push(match (row.median(imp), floor) {
                (None, _) => "n/a ¹".to_owned(),
                (Some(m), _) if imp == Imp::Floor => fmt_micros(m),
                (Some(m), Some(f)) => format!("{} ({:.2}x)", fmt_micros(m), ratio(m, f)),
                (Some(m), None) => fmt_micros(m),
            });
        }
        lines.push(line);
    }
    println!("**Median latency per write, µs (ratio to the floor (a))**\n");
    print!("{}", table::render(&headers, &lines));
    println!();
    println!(
        "¹ atomic-write-file always syncs the file and the directory on `commit()` and has no \
         atomic-only mode, so there is nothing to measure in those rows."
    );
    println!();

    let misses: Vec<(&Row, f64)> = rows
        .iter()
        .filter_map(|row| row.ours_ratio().map(|r| (row, r)))
        .filter(|(_, r)| *r > GOAL_RATIO)
        .collect();
    let checked = rows.iter().filter(|row| row.ours_ratio().is_some()).count();
    println!(
        "goal: ours within {GOAL_RATIO:.2}x of the floor in {} of {checked} rows",
        checked - misses.len()
    );
    println!();
    for (row, r) in &misses {
        // Both medians exist, or there would be no ratio.
        let ours = row.median(Imp::OursSync).unwrap_or_default();
        let floor = row.median(Imp::Floor).unwrap_or_default();
        println!(
            "- miss: {}: ours {} µs, floor {} µs ({r:.2}x)",
            row.cell,
            fmt_micros(ours),
            fmt_micros(floor)
        );
    }
    if !misses.is_empty() {
        println!();
    }
}

fn ratio(value: Duration, floor: Duration) -> f64 {
    micros(value) / micros(floor)
}

/// The shared state of the matrix: its directory, ours configured both ways, and the runtime
/// for (e).
struct Bench {
    dir: PathBuf,
    durable: AtomicWriter,
    atomic_only: AtomicWriter,
    runtime: Runtime,
}

impl Bench {
    fn new(dir: PathBuf) -> io::Result<Bench> {
        fs::create_dir(&dir).map_err(|e| context(e, format!("create {}", dir.display())))?;
        let mut atomic_only = AtomicWriter::new();
        atomic_only.durability(Durability::AtomicOnly);
        Ok(Bench {
            dir,
            durable: AtomicWriter::new(),
            atomic_only,
            runtime: stall::two_worker_runtime()?,
        })
    }

    fn writer(&self, cell: Cell) -> &AtomicWriter {
        match cell.durability {
            Durability::Durable => &self.durable,
            Durability::AtomicOnly => &self.atomic_only,
        }
    }

    /// Warms up, then runs the rounds of one cell and takes the medians.
    fn measure(&self, cell: Cell, plan: &Plan) -> io::Result<Row> {
        // Every implementation replaces the same files, one per thread.
        let targets: Vec<PathBuf> = (0..cell.threads)
            .map(|t| {
                self.dir.join(format!(
                    "{}k-{}-{}t-{t}.bin",
                    cell.payload >> 10,
                    cell.durability_label(),
                    cell.threads
                ))
            })
            .collect();
        let payload: Vec<u8> = (0..cell.payload).map(|i| (i % 251) as u8).collect();
        let imps: Vec<Imp> = Imp::ALL.into_iter().filter(|i| i.runs_in(cell)).collect();

        // The warm-up also creates the targets, so every measured write replaces a file.
        for &imp in &imps {
            self.batch(imp, cell, &targets, &payload, plan.warmup)?;
        }
        let iters = plan.iters(cell);
        let rounds = plan.rounds.min(iters);
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); imps.len()];
        for round in 0..rounds {
            let n = iters / rounds + usize::from(round < iters % rounds);
            // Rotating the first implementation keeps any one from always following another.
            for k in 0..imps.len() {
                let i = (round + k) % imps.len();
                let batch = self.batch(imps[i], cell, &targets, &payload, n)?;
                samples[i].extend(batch);
            }
        }
        let mut medians = [None; 5];
        for (imp, s) in imps.iter().zip(&samples) {
            medians[*imp as usize] = Some(median(s));
        }
        Ok(Row { cell, medians })
    }

    /// `n` timed writes per target, each target on its own thread (or task, for (e)).
    fn batch(
        &self,
        imp: Imp,
        cell: Cell,
        targets: &[PathBuf],
        payload: &[u8],
        n: usize,
    ) -> io::Result<Vec<Duration>> {
        let durable = cell.durable();
        let writer = self.writer(cell);
        let result = match imp {
            Imp::Floor => threaded(targets, n, &|t: &Path| floor_write(t, payload, durable)),
            Imp::Tempfile => threaded(targets, n, &|t: &Path| tempfile_write(t, payload, durable)),
            Imp::AtomicWriteFile => threaded(targets, n, &|t: &Path| awf_write(t, payload)),
            Imp::OursSync => threaded(targets, n, &|t: &Path| {
                writer.write(t, payload).map_err(io::Error::other)
            }),
            Imp::OursTokio => self.tokio_batch(writer, targets, payload, n),
        };
        result.map_err(|e| context(e, format!("{imp} in the cell {cell}")))
    }

    /// (e): one task per target on the two-worker runtime, each awaiting its writes in turn.
    fn tokio_batch(
        &self,
        writer: &AtomicWriter,
        targets: &[PathBuf],
        payload: &[u8],
        n: usize,
    ) -> io::Result<Vec<Duration>> {
        self.runtime.block_on(async {
            let barrier = Arc::new(tokio::sync::Barrier::new(targets.len()));
            let tasks: Vec<_> = targets
                .iter()
                .map(|target| {
                    let barrier = Arc::clone(&barrier);
                    let writer = writer.clone();
                    let target = target.clone();
                    let payload = payload.to_vec();
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let mut samples = Vec::with_capacity(n);
                        for _ in 0..n {
                            // `write_async` takes the bytes by value; a caller hands over a
                            // buffer it already owns, so the copy is made before the clock.
                            let bytes = payload.clone();
                            let start = Instant::now();
                            writer
                                .write_async(target.as_path(), bytes)
                                .await
                                .map_err(io::Error::other)?;
                            samples.push(start.elapsed());
                        }
                        Ok::<_, io::Error>(samples)
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(n * targets.len());
            for task in tasks {
                all.extend(task.await.map_err(io::Error::other)??);
            }
            Ok(all)
        })
    }
}

/// Runs `write` `n` times per target, one thread per target started together, and returns
/// the latency of every write.
fn threaded(
    targets: &[PathBuf],
    n: usize,
    write: &(dyn Fn(&Path) -> io::Result<()> + Sync),
) -> io::Result<Vec<Duration>> {
    if let [target] = targets {
        return timed(n, || write(target));
    }
    let barrier = Barrier::new(targets.len());
    thread::scope(|scope| {
        let threads: Vec<_> = targets
            .iter()
            .map(|target| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    timed(n, || write(target))
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n * targets.len());
        for t in threads {
            let samples = t
                .join()
                .map_err(|_| io::Error::other("a writer thread panicked"))??;
            all.extend(samples);
        }
        Ok(all)
    })
}

fn timed(n: usize, mut write: impl FnMut() -> io::Result<()>) -> io::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        write()?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// (a): the bare syscall sequence, the least any correct implementation must do.
#[allow(
    clippy::disallowed_methods,
    reason = "the floor is the bare calls, with no wrapper of ours"
)]
fn floor_write(target: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent(target);
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(
        ".{name}.{}.{}.floor",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(data)?;
    if durable {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&temp, target)?;
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// (b): tempfile's named temp file, persisted over the target.
fn tempfile_write(target: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = parent(target);
    let mut temp = NamedTempFile::new_in(dir)?;
    temp.write_all(data)?;
    if durable {
        temp.as_file().sync_all()?;
    }
    temp.persist(target).map_err(|e| e.error)?;
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// (c): atomic-write-file, whose `commit` always syncs the file and the directory.
fn awf_write(target: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = AtomicWriteFile::open(target)?;
    file.write_all(data)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_implementation_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.bin");
        let bench = Bench::new(dir.path().join("matrix")).unwrap();
        for durability in [Durability::Durable, Durability::AtomicOnly] {
            let cell = Cell {
                payload: 4 << 10,
                durability,
                threads: 2,
            };
            let targets = [target.clone(), dir.path().join("u.bin")];
            for imp in Imp::ALL.into_iter().filter(|i| i.runs_in(cell)) {
                let payload = format!("{imp} {durability:?}").into_bytes();
                let samples = bench.batch(imp, cell, &targets, &payload, 3).unwrap();
                assert_eq!(samples.len(), 6);
                assert_eq!(fs::read(&target).unwrap(), payload);
            }
        }
        // Only the two targets are left: no temp file leaked.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn the_matrix_has_eight_rows() {
        let cells = Cell::all();
        assert_eq!(cells.len(), 8);
        assert_eq!(cells[0].to_string(), "4 KiB, durable, 1 thread");
        assert_eq!(cells[7].to_string(), "1 MiB, atomic-only, 8 threads");
    }
}
