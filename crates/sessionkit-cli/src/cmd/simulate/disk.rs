//! The state directory before and after: the registry at its cap and a crashed predecessor's
//! leftovers at the start, and the checks at the end.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use sessionkit::store::{is_transcript_name, load_store};

use super::now_ms;
use super::plan::{Plan, main_key, main_session};
use super::report::{Report, Tally};

/// Pids above Linux's maximum (2^22): no process has them, so their locks are stale.
const DEAD_PID: u32 = 4_194_304;

/// How many crashed predecessors left locks behind: each is one dead pid.
const DEAD_OWNERS: u32 = 4;

/// Fills `dir` as a gateway that ran for a while left it: the registry at its cap (each
/// entry with its transcript, the agents' main sessions among them) and `leftover_locks`
/// stale locks of crashed predecessors.
pub(crate) fn prepare(dir: &Path, plan: &Plan) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let now = now_ms();
    let day = 24 * 3600 * 1000;
    let mut snapshot = String::from("{\n");
    let old = plan.max_entries.saturating_sub(plan.agents);
    for i in 0..old {
        let sid = format!("old-{i}");
        let _ = writeln!(
            snapshot,
            "  \"agent:{}:old:{i}\": {{\"sessionId\": \"{sid}\", \"updatedAt\": {}, \"status\": \"done\", \"label\": \"an old session\"}},",
            i % plan.agents.max(1),
            now - 2 * day + i as i64 * 1000,
        );
        fs::write(
            dir.join(format!("{sid}.jsonl")),
            "{\"role\":\"user\",\"text\":\"hello\"}\n",
        )?;
    }
    for agent in 0..plan.agents {
        let _ = writeln!(
            snapshot,
            "  \"{}\": {{\"sessionId\": \"{}\", \"updatedAt\": {now}, \"label\": \"main\"}}{}",
            main_key(agent),
            main_session(agent),
            if agent + 1 == plan.agents { "" } else { "," }
        );
        fs::write(dir.join(format!("{}.jsonl", main_session(agent))), "")?;
    }
    snapshot.push_str("}\n");
    fs::write(dir.join("sessions.json"), snapshot)?;
    for i in 0..plan.leftover_locks {
        let pid = DEAD_PID + (i as u32 % DEAD_OWNERS);
        fs::write(
            dir.join(format!("stale-{i}.jsonl.lock")),
            format!(r#"{{"pid": {pid}, "createdAt": "2026-01-01T00:00:00.000Z"}}"#),
        )?;
    }
    Ok(())
}

/// Checks the directory after a run and fills the report's disk figures: registry entries,
/// updates lost (an acknowledged version missing, and the key not evicted), orphan
/// transcripts, torn files, locks left, bytes on disk.
pub(crate) fn verify(
    dir: &Path,
    tally: &Tally,
    evicted: &HashSet<String>,
    report: &mut Report,
) -> Result<(), String> {
    let loaded = load_store(dir.join("sessions.json"))
        .map_err(|e| format!("the registry does not load: {e}"))?;
    let state = &loaded.state;
    report.registry_entries = state.len();
    report.torn_files = usize::from(loaded.torn_tail.is_some());
    report.evictions = evicted.len();

    let mut lost = BTreeMap::new();
    for (key, &version) in &tally.acked {
        if !key.contains(":run:") {
            continue;
        }
        let have = state.get(key).map(|e| {
            e.get("simVersion")
                .and_then(|v| v.get().parse::<u64>().ok())
                .unwrap_or(0)
        });
        match have {
            None if evicted.contains(key) => {}
            None => {
                lost.insert(key.clone(), "missing");
            }
            Some(v) if v < version => {
                lost.insert(key.clone(), "older");
            }
            Some(_) => {}
        }
    }
    report.updates_lost = lost.len();
    if !lost.is_empty() {
        eprintln!("simulate: lost updates: {lost:?}");
    }

    let mut bytes = 0;
    let mut orphans = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))? {
        let item = item.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let meta = item
            .metadata()
            .map_err(|e| format!("cannot stat {name}: {e}"))?;
        bytes += meta.len();
        if is_transcript_name(&name) {
            if state.transcript_refs(&name) == 0 {
                orphans.push(name.clone());
            }
            let content = fs::read(item.path()).map_err(|e| format!("cannot read {name}: {e}"))?;
            if content.last().is_some_and(|&b| b != b'\n') {
                report.torn_files += 1;
            }
        } else if name.ends_with(".lock") {
            report.locks_left += 1;
        }
    }
    report.orphan_transcripts = orphans.len();
    if !orphans.is_empty() {
        eprintln!("simulate: orphan transcripts: {orphans:?}");
    }
    report.bytes_on_disk = bytes;
    Ok(())
}
