//! `sessionkit store stats|get|list`: read a store, changing nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use serde_json::value::RawValue;
use sessionkit::store::{Entry, State};

use sessionkit::store::{LoadedStore, load_store};

use super::{iso_time, one_line, print, to_json};
use crate::exit;
use crate::failure::Failure;

/// Arguments of `sessionkit store stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// The store's snapshot, `sessions.json`; its journal is PATH.journal.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// Print the sizes as one JSON object (pretty-printed) instead of one a line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `sessionkit store get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The store's snapshot, `sessions.json`; its journal is PATH.journal.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// The session key.
    #[arg(value_name = "KEY")]
    pub(crate) key: String,
}

/// Arguments of `sessionkit store list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The store's snapshot, `sessions.json`; its journal is PATH.journal.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// Only the keys that start with this.
    #[arg(long, value_name = "PREFIX")]
    pub(crate) prefix: Option<String>,

    /// Most recently updated first (entries without updatedAt last) [default: by key].
    #[arg(long, conflicts_with = "oldest")]
    pub(crate) newest: bool,

    /// Least recently updated first (entries without updatedAt first) [default: by key].
    #[arg(long)]
    pub(crate) oldest: bool,

    /// At most this many entries, after ordering.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,

    /// Print the entries as one JSON object (pretty-printed) instead of one a line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The store's sizes, as `stats --json` prints them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats<'a> {
    path: &'a Path,
    entries: usize,
    sessions: usize,
    bytes: u64,
    snapshot_bytes: u64,
    journal_bytes: u64,
    journal_records: usize,
}

/// Prints the store's sizes.
pub(super) fn stats(args: &StatsArgs) -> Result<u8, Failure> {
    let LoadedStore {
        state,
        snapshot_bytes,
        journal_bytes,
        journal_records,
        ..
    } = load_store(&args.path)?;
    let sizes = state.stats();
    let stats = Stats {
        path: &args.path,
        entries: sizes.entries,
        sessions: sizes.sessions,
        bytes: sizes.bytes,
        snapshot_bytes,
        journal_bytes,
        journal_records,
    };
    let text = if args.json {
        to_json(&stats)?
    } else {
        let mut out = String::new();
        for (field, value) in [
            ("entries", stats.entries as u64),
            ("sessions", stats.sessions as u64),
            ("bytes", stats.bytes),
            ("snapshot bytes", stats.snapshot_bytes),
            ("journal bytes", stats.journal_bytes),
            ("journal records", stats.journal_records as u64),
        ] {
            let _ = writeln!(out, "{field}: {value}");
        }
        out
    };
    print(&text)?;
    Ok(exit::SUCCESS)
}

/// Prints the entry under the key, or exits 1 if there is none.
pub(super) fn get(args: &GetArgs) -> Result<u8, Failure> {
    let loaded = load_store(&args.path)?;
    let Some(entry) = loaded.state.get(&args.key) else {
        return Err(Failure::NoEntry {
            path: args.path.clone(),
            key: args.key.clone(),
        });
    };
    print(&format!("{entry}\n"))?;
    Ok(exit::SUCCESS)
}

/// One entry of `list --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed<'a> {
    key: &'a str,
    session_id: Option<&'a str>,
    updated_at: Option<i64>,
    /// The whole entry, with the bytes the store holds.
    entry: Box<RawValue>,
}

/// What `list --json` prints.
#[derive(Debug, Serialize)]
struct Listing<'a> {
    entries: Vec<Listed<'a>>,
}

/// Prints the entries the options ask for.
pub(super) fn list(args: &ListArgs) -> Result<u8, Failure> {
    let loaded = load_store(&args.path)?;
    let picked = pick(&loaded.state, args);
    let text = if args.json {
        let entries = picked
            .iter()
            .map(|&(key, entry)| {
                let raw =
                    RawValue::from_string(entry.as_str().to_owned()).map_err(Failure::StoreJson)?;
                Ok(Listed {
                    key,
                    session_id: entry.session_id(),
                    updated_at: entry.updated_at(),
                    entry: raw,
                })
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        to_json(&Listing { entries })?
    } else {
        human_list(&picked)
    };
    print(&text)?;
    Ok(exit::SUCCESS)
}

/// The entries `args` asks for, in its order.
fn pick<'s>(state: &'s State, args: &'s ListArgs) -> Vec<(&'s str, &'s Entry)> {
    let prefix = args.prefix.as_deref().unwrap_or("");
    let limit = args.limit.unwrap_or(usize::MAX);
    let with_entry = |(key, _): (&'s str, Option<i64>)| state.get(key).map(|entry| (key, entry));
    if args.newest {
        state
            .by_updated_at()
            .rev()
            .filter(|(key, _)| key.starts_with(prefix))
            .filter_map(with_entry)
            .take(limit)
            .collect()
    } else if args.oldest {
        state
            .by_updated_at()
            .filter(|(key, _)| key.starts_with(prefix))
            .filter_map(with_entry)
            .take(limit)
            .collect()
    } else {
        state.with_prefix(prefix).take(limit).collect()
    }
}

/// One line per entry: the key, the sessionId and updatedAt as an ISO time (`-` for a missing
/// one), in columns two spaces apart.
fn human_list(entries: &[(&str, &Entry)]) -> String {
    let rows: Vec<[String; 3]> = entries
        .iter()
        .map(|(key, entry)| {
            [
                one_line(key),
                entry.session_id().map_or_else(|| "-".to_owned(), one_line),
                entry.updated_at().map_or_else(|| "-".to_owned(), iso_time),
            ]
        })
        .collect();
    let width = |column: usize| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (keys, ids) = (width(0), width(1));
    let mut out = String::new();
    for [key, id, at] in &rows {
        let _ = writeln!(out, "{key:<keys$}  {id:<ids$}  {at}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_missing_fields_read_as_a_dash() {
        let a = Entry::parse(r#"{"sessionId":"s-1","updatedAt":0}"#).expect("entry");
        let b = Entry::parse(r#"{"updatedAt":"soon"}"#).expect("entry");
        assert_eq!(
            human_list(&[("agent:main", &a), ("k", &b)]),
            "agent:main  s-1  1970-01-01T00:00:00.000Z\nk           -    -\n"
        );
        assert_eq!(human_list(&[]), "");
    }
}
