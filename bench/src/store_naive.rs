//! A model of the original registry writer, for the `store` suite: every update re-reads,
//! deep-copies, sorts, trims and atomically rewrites the whole `sessions.json`, with fsync, under
//! the lock.
//!
//! This is OpenClaw's `updateSessionStore` as its first writer generation did it (see
//! `reference/openclaw-reference.md`, section 5), kept as plain as that one:
//!
//! 1. an in-process FIFO queue per store (the caller's [`tokio::sync::Mutex`]), then the session
//!    write lock on `sessions.json` (the lock file `sessions.json.lock`, taken with
//!    `sessionkit-write-lock`, which implements that lock);
//! 2. read the whole file, cache skipped, and parse it (`JSON.parse`);
//! 3. deep-copy the parsed store (`structuredClone`: the loader hands out a clone);
//! 4. apply the update: an upsert replaces the entry, a patch is an RFC 7396 merge with
//!    `updatedAt` = max(existing, now);
//! 5. maintenance in enforce mode, on every save: prune entries older than 30 days, then cap the
//!    count by sorting every entry by `updatedAt`, newest first, and dropping the rest; archive
//!    the transcripts of removed sessions that no remaining entry references;
//! 6. `JSON.stringify(store, null, 2)` and an atomic replace: a temp file beside it, write,
//!    fsync, rename over `sessions.json`, fsync the directory, all while the lock is held;
//! 7. release the lock.
//!
//! It runs on a blocking thread (the caller's `spawn_blocking`), so that the tokio workers stay
//! free and the 1 ms ticker compares fairly; the original ran it on its one event loop.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};
use sessionkit_write_lock::Locker;

use super::{archive_transcript, now_ms};

/// OpenClaw's default `pruneAfter`: 30 days, in milliseconds.
const PRUNE_AFTER_MS: i64 = 30 * 24 * 3600 * 1000;

/// The original's registry writer, in one directory.
#[derive(Debug)]
pub(super) struct NaiveStore {
    path: PathBuf,
    dir: PathBuf,
    cap: usize,
    locker: Locker,
    /// A counter for unique temp file names.
    temps: AtomicU64,
    /// Bytes of `sessions.json` written so far (every rewrite's whole file).
    pub(super) rewritten: AtomicU64,
}

/// One update, as the caller hands it over.
#[derive(Debug)]
pub(super) enum Change {
    /// Insert or replace the entry (its JSON text).
    Upsert(String),
    /// An RFC 7396 merge patch (its JSON text).
    Patch(String),
}

impl NaiveStore {
    /// The store at `dir/sessions.json`, which must exist; nothing is loaded (every update
    /// reads the file again).
    pub(super) fn new(dir: &Path, cap: usize) -> NaiveStore {
        NaiveStore {
            path: dir.join("sessions.json"),
            dir: dir.to_path_buf(),
            cap,
            locker: Locker::new(),
            temps: AtomicU64::new(0),
            rewritten: AtomicU64::new(0),
        }
    }

    /// Applies one update the original's way. Blocks for the whole read-modify-rewrite.
    pub(super) fn update(&self, key: &str, change: &Change) -> io::Result<()> {
        let lock = self
            .locker
            .acquire(&self.path)
            .map_err(|e| io::Error::other(format!("lock {}: {e}", self.path.display())))?;
        // Re-read with the cache skipped, and parse.
        let text = fs::read_to_string(&self.path)?;
        let loaded: Map<String, Value> = serde_json::from_str(&text).map_err(io::Error::other)?;
        // The loader returns a clone; the parsed original lives until the save is done.
        let mut store = loaded.clone();

        let now = now_ms();
        match change {
            Change::Upsert(entry) => {
                let entry: Value = serde_json::from_str(entry).map_err(io::Error::other)?;
                store.insert(key.to_owned(), entry);
            }
            Change::Patch(patch) => {
                let patch: Value = serde_json::from_str(patch).map_err(io::Error::other)?;
                let entry = store
                    .entry(key.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                let existing = updated_at(entry).unwrap_or(0);
                merge_patch(entry, &patch);
                entry["updatedAt"] = Value::from(existing.max(now));
            }
        }

        // Maintenance on save: prune, then cap by a full sort.
        let mut removed: Vec<Value> = Vec::new();
        let stale: Vec<String> = store
            .iter()
            .filter(|(_, e)| updated_at(e).is_some_and(|at| at < now - PRUNE_AFTER_MS))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            removed.extend(store.remove(&k));
        }
        if store.len() > self.cap {
            let mut order: Vec<(Option<i64>, String)> = store
                .iter()
                .map(|(k, e)| (updated_at(e), k.clone()))
                .collect();
            // Newest first; entries without `updatedAt` sort last, so they go first.
            order.sort_by_key(|e| std::cmp::Reverse(e.0));
            for (_, k) in order.drain(self.cap..) {
                removed.extend(store.remove(&k));
            }
        }
        if !removed.is_empty() {
            let referenced: HashSet<&str> = store
                .values()
                .filter_map(|e| e.get("sessionId").and_then(Value::as_str))
                .collect();
            for entry in &removed {
                if let Some(id) = entry.get("sessionId").and_then(Value::as_str)
                    && !referenced.contains(id)
                {
                    archive_transcript(&self.dir, id)?;
                }
            }
        }

        // `JSON.stringify(store, null, 2)`, then the durable atomic replace, lock held.
        let mut bytes = serde_json::to_vec_pretty(&store).map_err(io::Error::other)?;
        bytes.push(b'\n');
        self.replace(&bytes)?;
        self.rewritten
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        drop((loaded, store));
        lock.release()
            .map_err(|e| io::Error::other(format!("unlock {}: {e}", self.path.display())))
    }

    /// Temp file, write, fsync, rename, fsync the directory.
    #[allow(
        clippy::disallowed_methods,
        reason = "a model of the original's writer, bare calls included"
    )]
    fn replace(&self, bytes: &[u8]) -> io::Result<()> {
        let n = self.temps.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!("sessions.json.{}.{n}.tmp", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &self.path)?;
        File::open(&self.dir)?.sync_all()
    }
}

/// An entry's `updatedAt`, if it is a whole number.
fn updated_at(entry: &Value) -> Option<i64> {
    entry.get("updatedAt").and_then(Value::as_i64)
}

/// RFC 7396: `null` removes a field, an object merges, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return;
    };
    for (k, v) in fields {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_is_rfc_7396() {
        let mut target: Value = serde_json::from_str(r#"{"a":1,"b":{"c":2,"d":3}}"#).unwrap();
        let patch: Value = serde_json::from_str(r#"{"a":null,"b":{"c":4},"e":5}"#).unwrap();
        merge_patch(&mut target, &patch);
        assert_eq!(target.to_string(), r#"{"b":{"c":4,"d":3},"e":5}"#);
    }

    #[test]
    fn updates_rewrite_the_file_and_cap_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut seed = Map::new();
        for i in 0..5 {
            seed.insert(
                format!("k{i}"),
                serde_json::json!({"sessionId": format!("s{i}"), "updatedAt": now_ms() - 1000 + i}),
            );
        }
        fs::write(
            dir.path().join("sessions.json"),
            serde_json::to_vec_pretty(&seed).unwrap(),
        )
        .unwrap();
        fs::write(dir.path().join("s0.jsonl"), "{}\n").unwrap();
        let store = NaiveStore::new(dir.path(), 5);
        let entry = format!(r#"{{"sessionId":"new","updatedAt":{}}}"#, now_ms());
        store.update("new", &Change::Upsert(entry)).unwrap();
        store
            .update("new", &Change::Patch(r#"{"status":"done"}"#.to_owned()))
            .unwrap();
        let text = fs::read_to_string(dir.path().join("sessions.json")).unwrap();
        let after: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(after.len(), 5);
        assert!(!after.contains_key("k0"), "the oldest entry goes");
        assert_eq!(after["new"]["status"], "done");
        assert!(
            !dir.path().join("s0.jsonl").exists(),
            "its transcript is archived"
        );
        assert!(store.rewritten.load(Ordering::Relaxed) > text.len() as u64);
        assert!(!dir.path().join("sessions.json.lock").exists());
    }
}
