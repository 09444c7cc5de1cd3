//! SQLite as the registry, for the `store` suite: what a user would pick instead of a JSON file.
//!
//! One table, `sessions(key PRIMARY KEY, session_id, updated_at, entry)`, with an index on
//! `updated_at` for the cap. The database is in WAL mode with `synchronous=FULL` (every commit
//! is fsynced: durable) or `NORMAL` (commits are not fsynced, only checkpoints: a power loss may
//! lose the last commits). One connection serves the process, behind the caller's FIFO
//! [`tokio::sync::Mutex`], and each update is one `BEGIN IMMEDIATE` ... `COMMIT` transaction,
//! run on a blocking thread.
//!
//! The cap in SQLite's own style: inserting a new key past the cap deletes the oldest row in
//! the same transaction, then archives its transcript. The row count is kept in memory (read
//! once at open), since this connection is the only writer; `SELECT count(*)` per update would
//! cost a scan of 100,000 rows. A patch is SQLite's own RFC 7396 `json_patch`, with `updatedAt`
//! set to max(existing, now) in the same statement.

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{archive_transcript, now_ms};

/// How durable a commit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Synchronous {
    /// `PRAGMA synchronous=FULL`: the WAL is fsynced at every commit.
    Full,
    /// `PRAGMA synchronous=NORMAL`: the WAL is fsynced only at checkpoints.
    Normal,
}

/// The file name of the database in a row's directory.
pub(super) const DB_NAME: &str = "sessions.db";

/// A registry in SQLite: one connection, the only writer.
#[derive(Debug)]
pub(super) struct SqliteStore {
    conn: Connection,
    dir: PathBuf,
    cap: usize,
    /// Rows in the table, kept up to date by this connection.
    rows: usize,
}

fn db_error(e: rusqlite::Error) -> io::Error {
    io::Error::other(format!("sqlite: {e}"))
}

/// Creates the database at `path` in WAL mode and fills it with `entries` (key, sessionId,
/// updatedAt, compact entry JSON) in one transaction.
pub(super) fn create(
    path: &Path,
    entries: impl Iterator<Item = (String, String, i64, String)>,
) -> io::Result<()> {
    let mut conn = Connection::open(path).map_err(db_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_error)?;
    conn.execute_batch(
        "CREATE TABLE sessions (
             key TEXT PRIMARY KEY NOT NULL,
             session_id TEXT,
             updated_at INTEGER,
             entry TEXT NOT NULL
         );
         CREATE INDEX sessions_by_updated_at ON sessions (updated_at);",
    )
    .map_err(db_error)?;
    let tx = conn.transaction().map_err(db_error)?;
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO sessions (key, session_id, updated_at, entry) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(db_error)?;
        for (key, session_id, updated_at, entry) in entries {
            insert
                .execute(params![key, session_id, updated_at, entry])
                .map_err(db_error)?;
        }
    }
    tx.commit().map_err(db_error)?;
    // Closing the last connection checkpoints the WAL into the database and removes it.
    conn.close().map_err(|(_, e)| db_error(e))
}

impl SqliteStore {
    /// Opens the database in `dir` with the given durability, and counts its rows once.
    pub(super) fn open(dir: &Path, cap: usize, sync: Synchronous) -> io::Result<SqliteStore> {
        let conn = Connection::open(dir.join(DB_NAME)).map_err(db_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        let level = match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", level)
            .map_err(db_error)?;
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .map_err(db_error)?;
        Ok(SqliteStore {
            conn,
            dir: dir.to_path_buf(),
            cap,
            rows: usize::try_from(rows).unwrap_or(0),
        })
    }

    /// Rows in the table.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Inserts or replaces the entry under `key`, in one transaction; a new key past the cap
    /// evicts the oldest row in the same transaction.
    pub(super) fn upsert(
        &mut self,
        key: &str,
        session_id: &str,
        updated_at: i64,
        entry: &str,
    ) -> io::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM sessions WHERE key = ?1")
            .and_then(|mut s| s.exists([key]))
            .map_err(db_error)?;
        tx.prepare_cached(
            "INSERT INTO sessions (key, session_id, updated_at, entry) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET session_id = excluded.session_id,
                 updated_at = excluded.updated_at, entry = excluded.entry",
        )
        .and_then(|mut s| s.execute(params![key, session_id, updated_at, entry]))
        .map_err(db_error)?;
        let mut rows = self.rows + usize::from(!exists);
        let mut evicted = Vec::new();
        while rows > self.cap {
            let oldest: Option<(String, Option<String>)> = tx
                .prepare_cached(
                    "SELECT key, session_id FROM sessions ORDER BY updated_at ASC LIMIT 1",
                )
                .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(db_error)?;
            let Some((old_key, old_session)) = oldest else {
                break;
            };
            tx.prepare_cached("DELETE FROM sessions WHERE key = ?1")
                .and_then(|mut s| s.execute([&old_key]))
                .map_err(db_error)?;
            rows -= 1;
            evicted.extend(old_session);
        }
        tx.commit().map_err(db_error)?;
        self.rows = rows;
        // Every session id in this benchmark belongs to one key, so an evicted row's
        // transcript is no longer referenced.
        for id in evicted {
            archive_transcript(&self.dir, &id)?;
        }
        Ok(())
    }

    /// Applies an RFC 7396 merge patch to the entry under `key` and sets its `updatedAt` to
    /// max(existing, now), in one transaction.
    pub(super) fn patch(&mut self, key: &str, patch: &str) -> io::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error)?;
        tx.prepare_cached(
            "UPDATE sessions SET updated_at = max(updated_at, ?2),
                 entry = json_set(json_patch(entry, ?1), '$.updatedAt', max(updated_at, ?2))
             WHERE key = ?3",
        )
        .and_then(|mut s| s.execute(params![patch, now_ms(), key]))
        .map_err(db_error)?;
        tx.commit().map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_cap_and_patches_merge() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let seed = (0..3).map(|i| {
            (
                format!("k{i}"),
                format!("s{i}"),
                now - 1000 + i,
                format!(r#"{{"sessionId":"s{i}","updatedAt":{}}}"#, now - 1000 + i),
            )
        });
        create(&dir.path().join(DB_NAME), seed).unwrap();
        std::fs::write(dir.path().join("s0.jsonl"), "{}\n").unwrap();
        let mut store = SqliteStore::open(dir.path(), 3, Synchronous::Full).unwrap();
        assert_eq!(store.rows(), 3);
        let entry = format!(r#"{{"sessionId":"new","updatedAt":{now}}}"#);
        store.upsert("new", "new", now, &entry).unwrap();
        assert_eq!(store.rows(), 3);
        assert!(
            !dir.path().join("s0.jsonl").exists(),
            "its transcript is archived"
        );
        store
            .patch("new", r#"{"status":"done","updatedAt":null}"#)
            .unwrap();
        let (text, at): (String, i64) = store
            .conn
            .query_row(
                "SELECT entry, updated_at FROM sessions WHERE key = 'new'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["status"], "done");
        assert_eq!(value["updatedAt"], at);
        assert!(at >= now);
        let gone: i64 = store
            .conn
            .query_row("SELECT count(*) FROM sessions WHERE key = 'k0'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(gone, 0);
    }
}
