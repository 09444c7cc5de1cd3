//! The `store` suite's follow section: how a process reaches the new files after another
//! process compacted the store, at the large size. It follows the compaction by reading the
//! journals when it still has the replaced journal open (`IoCounters::followed_compactions`),
//! and loads the whole store again when it cannot (after two compactions it did not see:
//! `IoCounters::reloads`). The two take turns, side by side in one run.
//!
//! Two handles on one store in this process stand for the two processes: each has its own
//! open files, view and writer thread, and they share nothing but the files. A sample: the
//! compacting handle upserts a new key and compacts (once for a follow, twice for a reload),
//! then the clock runs around the other handle's `get` of that key, which notices the new
//! journal and reaches it.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use sessionkit_session_store::{Entry, IoCounters, Store};

use super::{fmt_bytes, fmt_ms, fmt_num, max};
use crate::common::context;
use crate::stats::percentile;
use crate::table::{self, Align};

/// How the other handle reached the new files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Follow,
    Reload,
}

/// One sample: how long the `get` took, and how many bytes of the files it read.
#[derive(Clone, Copy, Debug)]
struct Sample {
    time: Duration,
    bytes_read: u64,
}

/// What the section saw.
#[derive(Debug)]
pub(super) struct FollowResult {
    entries: usize,
    snapshot_bytes: u64,
    follow: Vec<Sample>,
    reload: Vec<Sample>,
}

fn store_error(what: &str) -> impl FnOnce(sessionkit_session_store::Error) -> io::Error + '_ {
    move |e| io::Error::other(format!("{what}: {e}"))
}

/// Runs `pairs` follows and `pairs` reloads, taking turns, on a store in `dir` that starts
/// from the seed snapshot `seed` of `entries` entries.
pub(super) fn run(
    seed: &Path,
    dir: &Path,
    entries: usize,
    pairs: usize,
) -> io::Result<FollowResult> {
    fs::create_dir(dir).map_err(|e| context(e, format!("create {}", dir.display())))?;
    let json = dir.join("sessions.json");
    // Compaction only ever replaces the snapshot by a rename: a hard link is as good as a copy.
    if fs::hard_link(seed, &json).is_err() {
        fs::copy(seed, &json)?;
        File::open(&json)?.sync_all()?;
    }
    let mut builder = Store::builder();
    builder.auto_compact(false);
    let compacting = builder.open(&json).map_err(store_error("open the store"))?;
    let following = builder
        .open(&json)
        .map_err(store_error("open the store again"))?;
    let mut result = FollowResult {
        entries,
        snapshot_bytes: 0,
        follow: Vec::new(),
        reload: Vec::new(),
    };
    for n in 0..pairs * 2 {
        // Alternating, starting with each way in turn.
        let way = if (n + n / 2) % 2 == 0 {
            Way::Follow
        } else {
            Way::Reload
        };
        let key = format!("follow:{n}");
        let entry = Entry::parse(&format!(r#"{{"sessionId":"follow-{n}","updatedAt":1}}"#))
            .map_err(store_error("make an entry"))?;
        compacting
            .upsert(&key, entry)
            .map_err(store_error("upsert"))?;
        let compactions = if way == Way::Follow { 1 } else { 2 };
        for _ in 0..compactions {
            compacting.compact().map_err(store_error("compact"))?;
        }
        let snapshot = fs::metadata(&json)?.len();
        let journal = fs::metadata(compacting.journal_path())?.len();
        result.snapshot_bytes = snapshot;
        let before = following.counters();
        let started = Instant::now();
        let found = following.get(&key).map_err(store_error("get"))?;
        let time = started.elapsed();
        let after = following.counters();
        if found.is_none() {
            return Err(io::Error::other(format!(
                "the other handle did not see {key} after the compaction"
            )));
        }
        let took = |c: &IoCounters| match way {
            Way::Follow => c.followed_compactions,
            Way::Reload => c.reloads,
        };
        if took(&after) != took(&before) + 1 {
            return Err(io::Error::other(format!(
                "a {way:?} sample did not take that way: {before:?} then {after:?}"
            )));
        }
        let bytes_read = match way {
            Way::Follow => after.journal_bytes_read - before.journal_bytes_read,
            // A reload reads the whole snapshot and the whole new journal.
            Way::Reload => snapshot + journal,
        };
        let sample = Sample { time, bytes_read };
        match way {
            Way::Follow => result.follow.push(sample),
            Way::Reload => result.reload.push(sample),
        }
    }
    Ok(result)
}

impl FollowResult {
    fn median(samples: &[Sample]) -> Duration {
        let times: Vec<Duration> = samples.iter().map(|s| s.time).collect();
        percentile(&times, 50.0)
    }

    /// The section's summary line.
    pub(super) fn summary(&self) -> String {
        let (follow, reload) = (Self::median(&self.follow), Self::median(&self.reload));
        format!(
            "follow: after another process's compaction at {} entries, following it took {} ms \
             against {} ms for reloading the store ({}x), medians of {} samples each",
            self.entries,
            fmt_ms(follow),
            fmt_ms(reload),
            fmt_num(reload.as_secs_f64() / follow.as_secs_f64().max(1e-9)),
            self.follow.len().min(self.reload.len())
        )
    }

    /// The section: a title, the table, a note and the summary line.
    pub(super) fn render(&self) -> String {
        let headers = [
            ("entries", Align::Right),
            ("how the other process reached the new files", Align::Left),
            ("samples", Align::Right),
            ("median (ms)", Align::Right),
            ("max (ms)", Align::Right),
            ("bytes read (median)", Align::Right),
        ];
        let row = |label: String, samples: &[Sample]| {
            let times: Vec<Duration> = samples.iter().map(|s| s.time).collect();
            let mut bytes: Vec<u64> = samples.iter().map(|s| s.bytes_read).collect();
            bytes.sort_unstable();
            vec![
                self.entries.to_string(),
                label,
                samples.len().to_string(),
                fmt_ms(percentile(&times, 50.0)),
                fmt_ms(max(&times)),
                fmt_bytes(bytes.get(bytes.len() / 2).copied().unwrap_or(0)),
            ]
        };
        let rows = vec![
            row(
                "followed: the rest of its old journal, then the new journal".to_owned(),
                &self.follow,
            ),
            row(
                format!(
                    "reloaded: the snapshot ({}) and the new journal",
                    fmt_bytes(self.snapshot_bytes)
                ),
                &self.reload,
            ),
        ];
        let mut out = String::new();
        let _ = writeln!(
            out,
            "**After another process's compaction, at {} entries: following it against \
             reloading the store**\n",
            self.entries
        );
        out.push_str(&table::render(&headers, &rows));
        out.push('\n');
        let _ = writeln!(
            out,
            "Two handles on one store in the parent process stand for the two processes. Per \
             sample, the first upserts a new key and compacts, once (the second follows) or \
             twice (the second must reload); the time is the second's `get` of that key, which \
             reaches the new files. The two ways take turns. Bytes read: for a follow, \
             `IoCounters::journal_bytes_read`; for a reload, the snapshot's and the new \
             journal's sizes, which it reads whole.\n"
        );
        let _ = writeln!(out, "{}", self.summary());
        out
    }
}
