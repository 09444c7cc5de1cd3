//! `sessionkit store check`: verify a store's files and the transcripts its entries name,
//! changing nothing.
//!
//! The snapshot and the journal are read as `get` reads them (under a shared lock, never
//! repaired), then checked piece by piece so that every problem is reported, not just the first:
//! the snapshot parses; the journal's header and every whole line parse (a bad line does not
//! stop the check of the lines after it); there is no torn tail; and each entry's transcript
//! exists, is a regular file and has no torn tail. The entries checked are the snapshot's (none
//! if it is corrupt) with the journal's valid records replayed over them.
//!
//! A transcript is looked at by its last byte alone, unless that shows a torn tail (then back
//! to its last newline): a clean transcript costs one byte however long it is, and no record
//! is read. Transcripts are read without their write lock, so an append in progress at that
//! moment looks like a torn tail.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use sessionkit::store::{
    self, Entry, JournalRecord, SeqTracker, State, is_transcript_name, parse_journal,
    parse_records, parse_snapshot,
};

use super::{journal_path, one_line, print, to_json};
use crate::exit;
use crate::failure::Failure;
use sessionkit::atomic_fs;
use sessionkit::lock::{Locker, Status};

/// The most corrupt journal lines listed one by one; the rest are counted in one more problem,
/// so that checking a file that is not a journal at all does not print a line per line.
const MAX_CORRUPT_LINES: usize = 100;

/// Arguments of `sessionkit store check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The store's snapshot, `sessions.json`; its journal is PATH.journal.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// Print the report as one JSON object (pretty-printed) instead of one problem a line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What kind of problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// The snapshot cannot be read as a registry.
    SnapshotCorrupt,
    /// The snapshot is missing, but the journal was written by a compaction, which writes the
    /// snapshot first: the snapshot was lost.
    SnapshotMissing,
    /// The journal was written by a newer format version; its records were not checked.
    JournalUnsupported,
    /// The journal's header or a whole line of it is not valid.
    JournalCorrupt,
    /// The journal ends in bytes after its last newline: an append cut short by a crash.
    JournalTornTail,
    /// The journal ends in a failed batch that its writer could not cut back out, and fenced
    /// off from readers instead; its records were not checked or applied.
    JournalFencedBatch,
    /// The journal's fence file (`<journal>.fence`) cannot be read.
    FenceCorrupt,
    /// A record whose `seq` is not above an earlier one of its writer in the same journal,
    /// which every reader skips: sessionkit never writes one.
    JournalSkippedRecord,
    /// An entry's transcript does not exist.
    TranscriptMissing,
    /// An entry's transcript is not a regular file, or cannot be looked at.
    TranscriptError,
    /// An entry's transcript ends in bytes after its last newline: an append cut short by a
    /// crash.
    TranscriptTornTail,
}

impl Kind {
    /// The name as the JSON form writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::SnapshotCorrupt => "snapshot-corrupt",
            Kind::SnapshotMissing => "snapshot-missing",
            Kind::JournalUnsupported => "journal-unsupported",
            Kind::JournalCorrupt => "journal-corrupt",
            Kind::JournalTornTail => "journal-torn-tail",
            Kind::JournalFencedBatch => "journal-fenced-batch",
            Kind::FenceCorrupt => "fence-corrupt",
            Kind::JournalSkippedRecord => "journal-skipped-record",
            Kind::TranscriptMissing => "transcript-missing",
            Kind::TranscriptError => "transcript-error",
            Kind::TranscriptTornTail => "transcript-torn-tail",
        }
    }
}

/// One problem found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Problem {
    pub(crate) kind: Kind,
    /// The file the problem is in: the snapshot, the journal or a transcript.
    pub(crate) file: PathBuf,
    /// The 1-based line of the damage, if it is in a line.
    pub(crate) line: Option<usize>,
    /// The byte offset of the damage in the journal or the transcript, if it is known.
    pub(crate) offset: Option<u64>,
    /// The session key whose transcript it is, for a transcript problem.
    pub(crate) key: Option<String>,
    /// The problem in words.
    pub(crate) message: String,
}

impl Problem {
    fn new(kind: Kind, file: &Path, message: String) -> Problem {
        Problem {
            kind,
            file: file.to_path_buf(),
            line: None,
            offset: None,
            key: None,
            message,
        }
    }
}

/// What `check` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    path: &'a Path,
    journal_path: &'a Path,
    /// Entries checked for a transcript.
    entries: usize,
    /// Valid journal records replayed.
    journal_records: usize,
    /// Distinct transcripts looked at.
    transcripts: usize,
    /// True if no problem was found.
    ok: bool,
    problems: Vec<Problem>,
}

/// What reading a store's two files found, before any transcript is looked at.
#[derive(Debug)]
pub(crate) struct Examined {
    /// The journal's path.
    pub(crate) journal: PathBuf,
    /// The snapshot's entries; empty if there is no snapshot or it is corrupt.
    pub(crate) snapshot: State,
    /// The journal's valid records, in file order.
    pub(crate) records: Vec<JournalRecord>,
    /// The snapshot's size in bytes (0 if there is none).
    pub(crate) snapshot_bytes: u64,
    /// The journal's size in bytes, a torn tail included (0 if there is none).
    pub(crate) journal_bytes: u64,
    /// Every problem of the two files.
    pub(crate) problems: Vec<Problem>,
}

/// Reads the snapshot and the journal as `get` does (under a shared lock, never repaired) and
/// checks them piece by piece, so that every problem is found, not just the first.
///
/// # Errors
///
/// The library's error if neither file exists or one cannot be read.
pub(crate) fn examine(path: &Path) -> Result<Examined, Failure> {
    let journal = journal_path(path);
    let files = store::read_store_files(path)?;
    let mut problems = Vec::new();
    let snapshot = match &files.snapshot {
        None => State::new(),
        Some(bytes) => match parse_snapshot(path, bytes) {
            Ok(state) => state,
            Err(err) => {
                let mut problem = Problem::new(Kind::SnapshotCorrupt, path, chain(&err));
                if let store::Error::CorruptSnapshot { line, .. } = &err {
                    problem.line = Some(*line);
                }
                problems.push(problem);
                State::new()
            }
        },
    };
    let records = match &files.journal {
        Some(bytes) => {
            let end = fenced_end(&files, &journal, bytes, &mut problems);
            check_journal(&journal, &bytes[..end], &mut problems)
        }
        None => Vec::new(),
    };
    if files.snapshot.is_none()
        && let Some(bytes) = &files.journal
        && let Some(epoch) = compaction_epoch(&journal, bytes)
    {
        let err = store::Error::MissingSnapshot {
            path: path.to_path_buf(),
            journal: journal.clone(),
            epoch,
        };
        problems.push(Problem::new(Kind::SnapshotMissing, path, chain(&err)));
    }
    let len = |bytes: &Option<Vec<u8>>| bytes.as_ref().map_or(0, |b| b.len() as u64);
    Ok(Examined {
        journal,
        snapshot,
        records,
        snapshot_bytes: len(&files.snapshot),
        journal_bytes: len(&files.journal),
        problems,
    })
}

/// The epoch of a journal whose header has a `base`, which only a compaction writes.
fn compaction_epoch(journal: &Path, bytes: &[u8]) -> Option<u64> {
    let header_end = bytes.iter().position(|&b| b == b'\n')?;
    let header = parse_journal(journal, &bytes[..=header_end]).ok()?.header?;
    header.base.map(|_| header.epoch)
}

/// Checks the store and prints the report; returns 0 if it is clean, 65 if not.
pub(super) fn run(args: &CheckArgs) -> Result<u8, Failure> {
    let path = args.path.as_path();
    let Examined {
        journal,
        snapshot: mut state,
        records,
        mut problems,
        ..
    } = examine(path)?;
    let replayed = state.replay(&records, &mut SeqTracker::new());
    problems.extend(skipped_records(path, &journal, &records, &replayed.skipped));
    let journal_records = replayed.applied;
    let transcripts = check_transcripts(path, &state, &mut problems);
    let report = Report {
        path,
        journal_path: &journal,
        entries: state.len(),
        journal_records,
        transcripts,
        ok: problems.is_empty(),
        problems,
    };
    let text = if args.json {
        to_json(&report)?
    } else {
        human(&report)
    };
    print(&text)?;
    Ok(if report.ok {
        exit::SUCCESS
    } else {
        exit::DATA_ERR
    })
}

/// A problem for each record that replaying `records` skipped (`skipped`).
///
/// Each writer numbers its records from 1 up and never repeats a number, and every journal
/// holds each record once, so within one journal a skip is always damage: the file was edited,
/// or pieced together from others. A repeat of an earlier record (the same writer, seq, key,
/// op and value) loses nothing; any other skipped record is a change no reader applies, and
/// the next compaction drops it for good.
pub(crate) fn skipped_records(
    path: &Path,
    journal: &Path,
    records: &[JournalRecord],
    skipped: &[store::Skipped],
) -> Vec<Problem> {
    if skipped.is_empty() {
        return Vec::new();
    }
    // The first record of each (writer, seq), for telling a repeat from another record.
    let mut first = std::collections::HashMap::new();
    for record in records {
        first
            .entry((record.record.writer, record.record.seq))
            .or_insert(record);
    }
    let by_offset: std::collections::HashMap<u64, &JournalRecord> =
        records.iter().map(|r| (r.offset, r)).collect();
    skipped
        .iter()
        .map(|s| {
            let earlier = first
                .get(&(s.writer, s.seq))
                .filter(|e| e.offset < s.offset);
            let this = by_offset.get(&s.offset).map(|r| &r.record);
            let message = match earlier {
                Some(e) if Some(&e.record) == this => format!(
                    "`{}` line {} (byte offset {}) repeats line {} (writer {}, seq {}): every \
                     reader skips the repeat, so nothing is lost, but sessionkit never writes a \
                     record twice: the journal was edited or pieced together from others; \
                     `sessionkit store compact {}` writes the store without it",
                    journal.display(),
                    s.line,
                    s.offset,
                    e.line,
                    s.writer,
                    s.seq,
                    path.display()
                ),
                _ => {
                    let clash = earlier.map_or(String::new(), |e| {
                        format!(
                            ", and line {} holds another record with seq {}",
                            e.line, s.seq
                        )
                    });
                    format!(
                        "`{}` line {} (byte offset {}): writer {}'s seq {} is not above the \
                         seq {} it reached earlier in the journal{clash}, so every reader skips \
                         this record as already applied and its change is lost; sessionkit \
                         never writes such a record (a writer's seq only grows): the journal \
                         was edited or pieced together from others; the record stays in the \
                         journal until the next compaction drops it for good, so copy it out \
                         first if it matters",
                        journal.display(),
                        s.line,
                        s.offset,
                        s.writer,
                        s.seq,
                        s.last_seq
                    )
                }
            };
            let mut problem = Problem::new(Kind::JournalSkippedRecord, journal, message);
            problem.line = Some(s.line);
            problem.offset = Some(s.offset);
            problem
        })
        .collect()
}

/// Checks the journal's header and each of its lines on its own, and returns the valid
/// records in file order.
fn check_journal(journal: &Path, bytes: &[u8], problems: &mut Vec<Problem>) -> Vec<JournalRecord> {
    let Some(first_nl) = bytes.iter().position(|&b| b == b'\n') else {
        // No whole line: an empty journal, a torn header, or not a journal at all.
        match parse_journal(journal, bytes) {
            Ok(parsed) => {
                if let Some(torn) = parsed.torn_tail {
                    problems.push(torn_tail(journal, 1, torn.offset, torn.len));
                }
            }
            Err(err) => problems.push(journal_problem(journal, &err)),
        }
        return Vec::new();
    };
    match parse_journal(journal, &bytes[..=first_nl]) {
        Ok(_) => {}
        Err(err) if err.is_unsupported() => {
            // Its records may mean something this version does not know; leave them alone.
            let mut problem = Problem::new(Kind::JournalUnsupported, journal, chain(&err));
            problem.line = Some(1);
            problem.offset = Some(0);
            problems.push(problem);
            return Vec::new();
        }
        // The records after a bad header are still worth checking.
        Err(err) => problems.push(journal_problem(journal, &err)),
    }
    let mut records = Vec::new();
    let (mut start, mut line) = (first_nl + 1, 2);
    let mut corrupt = 0;
    let mut unlisted = None;
    while let Some(len) = bytes[start..].iter().position(|&b| b == b'\n') {
        let end = start + len + 1;
        match parse_records(journal, &bytes[start..end], start as u64, line) {
            Ok(parsed) => records.extend(parsed.records),
            Err(err) => {
                corrupt += 1;
                if corrupt <= MAX_CORRUPT_LINES {
                    problems.push(journal_problem(journal, &err));
                } else {
                    unlisted.get_or_insert((line, start as u64));
                }
            }
        }
        start = end;
        line += 1;
    }
    if let Some((first_line, offset)) = unlisted {
        let more = corrupt - MAX_CORRUPT_LINES;
        let mut problem = Problem::new(
            Kind::JournalCorrupt,
            journal,
            format!(
                "`{}` has {more} more corrupt lines from line {first_line} (byte offset \
                 {offset}) on, not listed",
                journal.display()
            ),
        );
        problem.line = Some(first_line);
        problem.offset = Some(offset);
        problems.push(problem);
    }
    if start < bytes.len() {
        problems.push(torn_tail(
            journal,
            line,
            start as u64,
            (bytes.len() - start) as u64,
        ));
    }
    records
}

/// A corrupt journal header or line, from the library's error.
fn journal_problem(journal: &Path, err: &store::Error) -> Problem {
    let mut problem = Problem::new(Kind::JournalCorrupt, journal, chain(err));
    if let store::Error::CorruptJournal { line, offset, .. } = err {
        problem.line = Some(*line);
        problem.offset = Some(*offset);
    }
    problem
}

/// Where the journal's `bytes` end for readers: before a failed batch behind a fence (reported
/// as a problem), or at their end. A fence file that cannot be read is reported too, and hides
/// nothing here.
fn fenced_end(
    files: &store::StoreFiles,
    journal: &Path,
    bytes: &[u8],
    problems: &mut Vec<Problem>,
) -> usize {
    match files.fenced_batch() {
        Ok(None) => bytes.len(),
        Ok(Some(fenced)) => {
            let end =
                usize::try_from(fenced.offset).map_or(bytes.len(), |end| end.min(bytes.len()));
            let line = bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1;
            let mut problem = Problem::new(
                Kind::JournalFencedBatch,
                journal,
                format!(
                    "`{}` ends in a failed batch of {} at line {line} (byte offset {}) that its \
                     writer could not cut back out, and fenced off instead: no reader applies \
                     it, and the next write to the store or open of it cuts it off",
                    journal.display(),
                    count(fenced.len, "byte"),
                    fenced.offset
                ),
            );
            problem.line = Some(line);
            problem.offset = Some(fenced.offset);
            problems.push(problem);
            end
        }
        Err(err) => {
            let kind = if err.is_unsupported() {
                Kind::JournalUnsupported
            } else {
                Kind::FenceCorrupt
            };
            let fence = err.path().unwrap_or(journal);
            problems.push(Problem::new(kind, fence, chain(&err)));
            bytes.len()
        }
    }
}

/// A torn tail of `len` bytes at `offset`, on line `line`.
fn torn_tail(journal: &Path, line: usize, offset: u64, len: u64) -> Problem {
    let mut problem = Problem::new(
        Kind::JournalTornTail,
        journal,
        format!(
            "`{}` ends in a torn tail of {} at line {line} (byte offset {offset}): an append \
             was cut short by a crash; the next open of the store cuts it off",
            journal.display(),
            count(len, "byte")
        ),
    );
    problem.line = Some(line);
    problem.offset = Some(offset);
    problem
}

/// Looks at the transcript of every entry and returns how many distinct transcripts there
/// were. An entry without `sessionFile` or `sessionId` names no transcript.
fn check_transcripts(path: &Path, state: &State, problems: &mut Vec<Problem>) -> usize {
    // A bare `sessions.json` has the empty parent, which joins to paths relative to here.
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut seen: HashMap<PathBuf, Option<Trouble>> = HashMap::new();
    for (key, entry) in state.iter() {
        let Some(transcript) = transcript(dir, entry) else {
            continue;
        };
        let found = seen
            .entry(transcript.clone())
            .or_insert_with(|| look_at(dir, &transcript));
        if let Some(trouble) = found {
            let mut problem = Problem::new(
                trouble.kind,
                &transcript,
                format!(
                    "entry `{key}`: transcript `{}` {}",
                    transcript.display(),
                    trouble.what
                ),
            );
            problem.offset = trouble.offset;
            problem.key = Some(key.to_owned());
            problems.push(problem);
        }
    }
    seen.len()
}

/// The transcript an entry names: its `sessionFile` (relative to the store's directory) if it
/// is a non-empty string, else `<sessionId>.jsonl` in the store's directory.
fn transcript(dir: &Path, entry: &Entry) -> Option<PathBuf> {
    match entry.session_file() {
        Some(file) => Some(dir.join(file)),
        None => entry.session_id().map(|id| dir.join(format!("{id}.jsonl"))),
    }
}

/// What is wrong with a transcript.
#[derive(Debug)]
struct Trouble {
    kind: Kind,
    /// What follows the transcript's path in the message.
    what: String,
    /// The byte offset of the damage in the transcript, if it is in it.
    offset: Option<u64>,
}

impl Trouble {
    fn new(kind: Kind, what: String) -> Trouble {
        Trouble {
            kind,
            what,
            offset: None,
        }
    }
}

/// What is wrong with a transcript of the store in `dir`, if anything: only its metadata and
/// its last byte are read, unless that shows a torn tail.
fn look_at(dir: &Path, transcript: &Path) -> Option<Trouble> {
    let missing = || Trouble::new(Kind::TranscriptMissing, "does not exist".to_owned());
    match fs::metadata(transcript) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Some(Trouble::new(
                Kind::TranscriptError,
                "is not a regular file".to_owned(),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(missing()),
        Err(e) => {
            return Some(Trouble::new(
                Kind::TranscriptError,
                format!("cannot be looked at: {e}"),
            ));
        }
    }
    match atomic_fs::find_torn_tail(transcript) {
        Ok(None) => None,
        Ok(Some(torn)) => Some(Trouble {
            kind: Kind::TranscriptTornTail,
            what: match live_holder(transcript) {
                // A holder cuts a crash's torn tail when it opens the transcript, so with one
                // alive these bytes are most likely its append, read before it was whole.
                Some(holder) => format!(
                    "ends in {} after its last newline, at byte offset {}, while its write lock \
                     is held by {holder}: an append may have been in flight (the check reads \
                     without the lock); run the check again, and if they stay, a write was cut \
                     short; {}",
                    count(torn.len, "byte"),
                    torn.offset,
                    who_cuts(dir, transcript)
                ),
                None => format!(
                    "ends in a torn tail of {} at byte offset {}: an append was cut short by a \
                     crash; {}",
                    count(torn.len, "byte"),
                    torn.offset,
                    who_cuts(dir, transcript)
                ),
            },
            offset: Some(torn.offset),
        }),
        // Archived or deleted since its metadata was read.
        Err(e) if e.is_not_found() => Some(missing()),
        Err(e) => Some(Trouble::new(
            Kind::TranscriptError,
            format!("cannot be read: {}", chain(&e)),
        )),
    }
}

/// Who holds the write lock of `transcript`, if a live owner does: `pid N`, or `a live owner`
/// for a record without a pid. Looked at as `lock show` does, with the `SESSIONKIT_LOCK_*`
/// settings, changing nothing; `None` also if the lock or the settings cannot be read.
fn live_holder(transcript: &Path) -> Option<String> {
    let inspection = Locker::from_env().ok()?.inspect(transcript).ok()?;
    (inspection.status == Status::Held).then(|| {
        inspection
            .record
            .and_then(|record| record.pid)
            .map_or_else(|| "a live owner".to_owned(), |pid| format!("pid {pid}"))
    })
}

/// Who cuts the torn tail of a transcript of the store in `dir`. The library cuts it when it
/// opens `<sessionId>.jsonl` in the store's directory for appending, and `doctor --fix` cuts it
/// in any transcript-named file directly in the directory it is given, both under the
/// transcript's write lock; neither looks anywhere else. (`sessionkit append` cuts nothing.)
fn who_cuts(dir: &Path, transcript: &Path) -> &'static str {
    let named = transcript
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(is_transcript_name);
    if named && transcript.parent() == Some(dir) {
        "the library cuts it off when it next opens the transcript for appending, under its \
         write lock, and so does `sessionkit doctor --fix` on the store's directory"
    } else {
        "neither the library nor `sessionkit doctor --fix` cuts it, as both cut only \
         `<sessionId>.jsonl` transcripts directly in the store's directory"
    }
}

/// An error's message followed by each of its sources', joined with `": "`.
pub(crate) fn chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// `n` and the noun, plural unless `n` is 1: `1 entry`, `2 entries`, `0 transcripts`,
/// `1 byte`. Any integer type will do.
pub(crate) fn count(n: impl fmt::Display, noun: &str) -> String {
    let n = n.to_string();
    match (n.as_str(), noun.strip_suffix('y')) {
        ("1", _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

/// The report for people: `kind: message` per problem, then the summary line.
fn human(report: &Report<'_>) -> String {
    let mut out = String::new();
    for problem in &report.problems {
        let _ = writeln!(
            out,
            "{}: {}",
            problem.kind.as_str(),
            one_line(&problem.message)
        );
    }
    let problems = match report.problems.len() {
        0 => "no problems".to_owned(),
        n => count(n, "problem"),
    };
    let _ = writeln!(
        out,
        "{}",
        one_line(&format!(
            "checked `{}`: {}, {}, {}: {problems}",
            report.path.display(),
            count(report.entries, "entry"),
            count(report.journal_records, "journal record"),
            count(report.transcripts, "transcript"),
        ))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_in_json() {
        for kind in [
            Kind::SnapshotCorrupt,
            Kind::JournalUnsupported,
            Kind::JournalCorrupt,
            Kind::JournalTornTail,
            Kind::JournalFencedBatch,
            Kind::FenceCorrupt,
            Kind::TranscriptMissing,
            Kind::TranscriptError,
            Kind::TranscriptTornTail,
        ] {
            assert_eq!(
                serde_json::to_value(kind).expect("a kind serializes"),
                kind.as_str()
            );
        }
    }

    #[test]
    fn counts_agree_in_number() {
        assert_eq!(count(1, "entry"), "1 entry");
        assert_eq!(count(0, "entry"), "0 entries");
        assert_eq!(count(2, "journal record"), "2 journal records");
        assert_eq!(count(1, "transcript"), "1 transcript");
    }

    #[test]
    fn transcripts_come_from_session_file_or_session_id() {
        let dir = Path::new("/s");
        let by_id = Entry::parse(r#"{"sessionId":"0b7e"}"#).expect("entry");
        assert_eq!(
            transcript(dir, &by_id),
            Some(PathBuf::from("/s/0b7e.jsonl"))
        );
        let relative = Entry::parse(r#"{"sessionId":"0b7e","sessionFile":"t/0b7e-topic-9.jsonl"}"#)
            .expect("entry");
        assert_eq!(
            transcript(dir, &relative),
            Some(PathBuf::from("/s/t/0b7e-topic-9.jsonl"))
        );
        let absolute =
            Entry::parse(r#"{"sessionId":"0b7e","sessionFile":"/x/y.jsonl"}"#).expect("entry");
        assert_eq!(
            transcript(dir, &absolute),
            Some(PathBuf::from("/x/y.jsonl"))
        );
        let empty = Entry::parse(r#"{"sessionId":"0b7e","sessionFile":""}"#).expect("entry");
        assert_eq!(
            transcript(dir, &empty),
            Some(PathBuf::from("/s/0b7e.jsonl"))
        );
        let none = Entry::parse(r#"{"label":"x","sessionFile":7}"#).expect("entry");
        assert_eq!(transcript(dir, &none), None);
    }

    #[test]
    fn only_transcripts_beside_the_store_are_said_to_be_cut() {
        let cut = |dir: &str, transcript: &str| {
            who_cuts(Path::new(dir), Path::new(transcript)).starts_with("the library cuts it")
        };
        assert!(cut("/s", "/s/0b7e.jsonl"));
        assert!(cut("/s", "/s/0b7e-topic-9.jsonl"));
        assert!(cut("/s", "/s/./0b7e.jsonl"));
        // A bare `sessions.json`'s transcripts, relative to here.
        assert!(cut("", "0b7e.jsonl"));
        assert!(!cut("/s", "/s/t/0b7e-topic-9.jsonl"));
        assert!(!cut("/s", "/x/0b7e.jsonl"));
        assert!(!cut("/s", "/s/notes.txt"));
        assert!(cut("/s", "/s/-topic-9.jsonl"));
        assert!(!cut("/s", "/s/.jsonl"));
    }

    #[test]
    fn every_corrupt_line_is_reported_and_valid_records_are_kept() {
        let journal = Path::new("s.json.journal");
        let bytes = concat!(
            "{\"sessionkitJournal\":1,\"epoch\":1}\n",
            "{\"seq\":1,\"writer\":\"00000000000000aa\",\"op\":\"upsert\",\"key\":\"a\",\"entry\":{}}\n",
            "not json\n",
            "{\"seq\":2,\"writer\":\"00000000000000aa\",\"op\":\"delete\",\"key\":\"b\"}\n",
            "{\"seq\":3,\"writer\":\"00000000000000aa\",\"op\":\"nope\",\"key\":\"c\"}\n",
            "{\"seq\":4,"
        );
        let mut problems = Vec::new();
        let records = check_journal(journal, bytes.as_bytes(), &mut problems);
        assert_eq!(records.len(), 2);
        let found: Vec<(Kind, Option<usize>)> = problems.iter().map(|p| (p.kind, p.line)).collect();
        assert_eq!(
            found,
            [
                (Kind::JournalCorrupt, Some(3)),
                (Kind::JournalCorrupt, Some(5)),
                (Kind::JournalTornTail, Some(6)),
            ]
        );
        assert_eq!(problems[2].offset, Some((bytes.len() - 9) as u64));
    }

    #[test]
    fn a_garbage_file_lists_a_bounded_number_of_lines() {
        let journal = Path::new("s.json.journal");
        let bytes = "x\n".repeat(MAX_CORRUPT_LINES + 50);
        let mut problems = Vec::new();
        check_journal(journal, bytes.as_bytes(), &mut problems);
        // The header, then MAX_CORRUPT_LINES lines, then one for the rest.
        assert_eq!(problems.len(), MAX_CORRUPT_LINES + 2);
        let last = problems.last().expect("a summary problem");
        assert!(
            last.message.contains("49 more corrupt lines"),
            "{}",
            last.message
        );
    }
}
