//! The write-behind probe: how long another file's `fsync` waits while a large file is
//! written durably, with atomic-fs's write-behind and without it.
//!
//! A journal thread appends a 300-byte record and `fdatasync`s it, over and over, the way the
//! session store's writer acknowledges a batch. Meanwhile the main thread replaces a large
//! file durably (a compaction's snapshot, in 1 MiB pieces) with [`AtomicWriter`], once with
//! the default write-behind and once with it off (`write_behind(0)`), taking turns in rounds.
//! Only the journal's syncs that started while the large write ran are counted.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sessionkit_atomic_fs::{AtomicWriter, DEFAULT_WRITE_BEHIND};

use crate::common::context;
use crate::stats::{median, millis, percentile};
use crate::table::{self, Align};

/// How the probe is sized.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BehindPlan {
    /// The large file's size.
    pub(crate) bytes: usize,
    /// Each variant writes the large file once per round.
    pub(crate) rounds: usize,
}

/// One variant: the write-behind chunk (0: off).
const VARIANTS: [u64; 2] = [0, DEFAULT_WRITE_BEHIND];

/// What one variant saw over all rounds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    chunk: u64,
    /// How long each durable replace of the large file took.
    writes: Vec<Duration>,
    /// The journal's `write` + `fdatasync` times that started during those replaces.
    syncs: Vec<Duration>,
}

/// Runs the probe in `dir`.
pub(crate) fn run(plan: &BehindPlan, dir: &Path) -> io::Result<Vec<Seen>> {
    std::fs::create_dir(dir).map_err(|e| context(e, format!("create {}", dir.display())))?;
    let mut seen: Vec<Seen> = VARIANTS
        .iter()
        .map(|&chunk| Seen {
            chunk,
            ..Seen::default()
        })
        .collect();
    let piece = vec![b' '; 1 << 20];
    for round in 0..plan.rounds {
        eprintln!("write-behind probe: round {}/{}", round + 1, plan.rounds);
        for k in 0..VARIANTS.len() {
            // Rotating the first variant keeps either from always following the other.
            let v = (round + k) % VARIANTS.len();
            let (write, syncs) = measure(dir, VARIANTS[v], plan.bytes, &piece)?;
            seen[v].writes.push(write);
            seen[v].syncs.extend(syncs);
        }
    }
    Ok(seen)
}

/// One durable replace of `bytes` with write-behind `chunk`, beside the journal thread.
fn measure(
    dir: &Path,
    chunk: u64,
    bytes: usize,
    piece: &[u8],
) -> io::Result<(Duration, Vec<Duration>)> {
    let journal_path = dir.join("journal.jsonl");
    let mut journal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal_path)
        .map_err(|e| context(e, format!("open {}", journal_path.display())))?;
    let writing = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let syncer = thread::spawn({
        let (writing, done) = (writing.clone(), done.clone());
        move || -> io::Result<Vec<Duration>> {
            let record = [b'r'; 300];
            let mut syncs = Vec::new();
            while !done.load(Ordering::Acquire) {
                let counted = writing.load(Ordering::Acquire);
                let start = Instant::now();
                journal.write_all(&record)?;
                journal.sync_data()?;
                if counted {
                    syncs.push(start.elapsed());
                }
            }
            Ok(syncs)
        }
    });
    // The journal is syncing before the large write starts.
    thread::sleep(Duration::from_millis(50));
    let target = dir.join("sessions.json");
    let mut writer = AtomicWriter::new();
    writer.write_behind(chunk);
    writing.store(true, Ordering::Release);
    let start = Instant::now();
    let written = writer
        .prepare_with(&target, |out| {
            let mut left = bytes;
            while left > 0 {
                let n = left.min(piece.len());
                out.write_all(&piece[..n])?;
                left -= n;
            }
            Ok(())
        })
        .and_then(|pending| pending.commit());
    let took = start.elapsed();
    writing.store(false, Ordering::Release);
    done.store(true, Ordering::Release);
    let syncs = syncer
        .join()
        .map_err(|_| io::Error::other("the journal thread panicked"))?
        .map_err(|e| context(e, format!("append to {}", journal_path.display())))?;
    written.map_err(io::Error::other)?;
    std::fs::remove_file(&journal_path)
        .map_err(|e| context(e, format!("remove {}", journal_path.display())))?;
    Ok((took, syncs))
}

/// The probe's table and its one-line summary, in Markdown.
pub(crate) fn report(plan: &BehindPlan, seen: &[Seen]) -> String {
    let headers = [
        ("write-behind", Align::Left),
        ("large write, median (ms)", Align::Right),
        ("journal syncs", Align::Right),
        ("p50 (ms)", Align::Right),
        ("p99 (ms)", Align::Right),
        ("max (ms)", Align::Right),
    ];
    let lines: Vec<Vec<String>> = seen
        .iter()
        .map(|s| {
            vec![
                if s.chunk == 0 {
                    "off (`write_behind(0)`)".to_owned()
                } else {
                    format!("{} MiB (the default)", s.chunk >> 20)
                },
                format!("{:.1}", millis(median(&s.writes))),
                s.syncs.len().to_string(),
                format!("{:.2}", millis(percentile(&s.syncs, 50.0))),
                format!("{:.2}", millis(percentile(&s.syncs, 99.0))),
                format!("{:.2}", millis(percentile(&s.syncs, 100.0))),
            ]
        })
        .collect();
    let mut out = format!(
        "**Write-behind: a journal's `write` + `fdatasync` while {} MiB are written durably \
         beside it, {} rounds**\n\n",
        plan.bytes >> 20,
        plan.rounds
    );
    out.push_str(&table::render(&headers, &lines));
    if let [off, on] = seen {
        let worst = |s: &Seen| millis(percentile(&s.syncs, 100.0));
        let write = |s: &Seen| millis(median(&s.writes));
        out.push_str(&format!(
            "\nwrite-behind: the journal's worst sync {:.1}x shorter ({:.2} against {:.2} ms); \
             the large write {:.2}x as long\n",
            worst(off) / worst(on).max(f64::MIN_POSITIVE),
            worst(on),
            worst(off),
            write(on) / write(off).max(f64::MIN_POSITIVE)
        ));
    }
    out
}
