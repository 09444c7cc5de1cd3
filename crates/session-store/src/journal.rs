//! The journal: an append-only JSON Lines file of registry changes beside the snapshot.
//!
//! # Format (version 1)
//!
//! The journal of `sessions.json` is `sessions.json.journal`. Its first line is a header, then
//! one record per line; every line ends in `\n` and holds no other newline:
//!
//! ```text
//! {"sessionkitJournal":1,"epoch":7}
//! {"seq":12,"writer":"9f1c2a7be0d34c55","op":"upsert","key":"agent:main:main","entry":{"sessionId":"s1","updatedAt":1763708000000}}
//! {"seq":13,"writer":"9f1c2a7be0d34c55","op":"patch","key":"agent:main:main","patch":{"label":"x","updatedAt":1763708001000}}
//! {"seq":14,"writer":"9f1c2a7be0d34c55","op":"delete","key":"cron:nightly"}
//! {"seq":15,"writer":"9f1c2a7be0d34c55","op":"evict","key":"hook:1b9d","reason":"cap"}
//! ```
//!
//! - `epoch` is chosen by whoever creates the journal (the store, at each compaction); it tells
//!   one journal generation from the next.
//! - A compaction's new journal also names, in its header, the journal it replaced and where
//!   its records were copied from ([`JournalBase`]):
//!   `{"sessionkitJournal":1,"epoch":8,"base":{"epoch":7,"dev":2049,"ino":131075,"offset":4096}}`.
//! - `writer` is 16 lowercase hex digits naming one writer (one open store in one process);
//!   `seq` counts that writer's records from 1 and only grows. Several processes append, one
//!   batch at a time under the journal's exclusive lock, each from its own counter; there is
//!   no global counter. Records apply in file order, and a `(writer, seq)` pair seen again is
//!   a duplicate ([`SeqTracker`]).
//! - `upsert` replaces the entry under `key` (creating it). `patch` applies an RFC 7396 merge
//!   patch ([`Entry::merge_patch`]); to a missing key it applies to `{}`. The patch already
//!   holds the resolved `updatedAt` ([`Patch::resolve`]), so replay never reads the clock.
//!   `delete` removes the key; `evict` has the same effect, and says why (`"cap"`, `"prune"`
//!   or `"disk"`) for the audit trail.
//! - The record's fields appear in the order above. Readers ignore fields they do not know, so
//!   an optional field can be added without a new version; a new op needs one.
//!
//! The journal copy of an entry or patch has all whitespace outside strings removed (its value
//! is unchanged). That is what keeps a record on one line when the entry came from a
//! pretty-printed snapshot, whose nested values span lines. [`Record::upsert`] and
//! [`State::apply`](crate::State::apply) normalise the same way, so the state built in memory
//! and the state replayed from the file are byte for byte the same.
//!
//! # Reading
//!
//! A line is committed once its `\n` is written. Bytes after the last `\n` are a torn tail (a
//! crash mid-append) and are reported, not parsed, even if they look complete. A whole line
//! that is not a valid record is corruption ([`Error::CorruptJournal`]) and is never skipped.
//! An empty file is a fresh journal; a file whose only content is a torn line that is a prefix
//! of a header is a fresh journal with a torn tail; anything else without a valid header line
//! is corrupt.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::entry::{Entry, Patch};
use crate::error::{Error, Input, JournalProblem, Result};
use crate::raw::{self, Parsed};

/// The journal format version this crate writes and reads.
pub const JOURNAL_VERSION: u64 = 1;

/// The suffix the journal's file name adds to the snapshot's (`sessions.json.journal`).
pub const JOURNAL_SUFFIX: &str = ".journal";

const HEADER_PREFIX: &str = "{\"sessionkitJournal\":1,\"epoch\":";

/// The id of one writer: 64 bits, written as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriterId(u64);

impl WriterId {
    /// The writer id with these bits.
    pub const fn new(bits: u64) -> WriterId {
        WriterId(bits)
    }

    /// A fresh random writer id (from the standard library's random hash keys, the time, the
    /// process id and a counter).
    pub fn random() -> WriterId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(d.as_nanos());
        }
        WriterId(hasher.finish())
    }

    /// The id's bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
}

impl fmt::Display for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriterId({self})")
    }
}

impl FromStr for WriterId {
    type Err = Error;

    /// Parses exactly 16 lowercase hex digits.
    fn from_str(s: &str) -> Result<WriterId> {
        let ok = s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .map(WriterId)
            .ok_or_else(|| Error::invalid(Input::WriterId, "it is not 16 lowercase hex digits"))
    }
}

/// Why an entry was evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictReason {
    /// The entry count was over `maxEntries` (`"cap"`).
    Cap,
    /// The entry was older than `pruneAfter` (`"prune"`).
    Prune,
    /// The disk budget was exceeded (`"disk"`).
    Disk,
}

impl EvictReason {
    /// The reason as the journal writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::Cap => "cap",
            EvictReason::Prune => "prune",
            EvictReason::Disk => "disk",
        }
    }

    fn parse(s: &str) -> Option<EvictReason> {
        match s {
            "cap" => Some(EvictReason::Cap),
            "prune" => Some(EvictReason::Prune),
            "disk" => Some(EvictReason::Disk),
            _ => None,
        }
    }
}

impl fmt::Display for EvictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a record does to the entry under its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Replace (or create) the entry.
    Upsert(Entry),
    /// Apply a merge patch (to `{}` if the key is missing).
    Patch(Patch),
    /// Remove the entry.
    Delete,
    /// Remove the entry, because maintenance evicted it.
    Evict(EvictReason),
}

impl Op {
    /// The op's name as the journal writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Upsert(_) => "upsert",
            Op::Patch(_) => "patch",
            Op::Delete => "delete",
            Op::Evict(_) => "evict",
        }
    }
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Record {
    /// The writer's sequence number for this record.
    pub seq: u64,
    /// The writer that wrote it.
    pub writer: WriterId,
    /// The session key it changes.
    pub key: String,
    /// What it does.
    pub op: Op,
}

impl Record {
    /// A record with these parts, as given.
    pub fn new(seq: u64, writer: WriterId, key: impl Into<String>, op: Op) -> Record {
        Record {
            seq,
            writer,
            key: key.into(),
            op,
        }
    }

    /// An upsert. The entry is stored in its journal form (whitespace outside strings
    /// removed), so applying this record gives the same bytes as replaying it from the file.
    pub fn upsert(seq: u64, writer: WriterId, key: impl Into<String>, entry: &Entry) -> Record {
        Record::new(seq, writer, key, Op::Upsert(entry.minified().into_owned()))
    }

    /// A patch record; resolve the patch first ([`Patch::resolve`]).
    pub fn patch(seq: u64, writer: WriterId, key: impl Into<String>, patch: Patch) -> Record {
        Record::new(seq, writer, key, Op::Patch(patch))
    }

    /// A delete.
    pub fn delete(seq: u64, writer: WriterId, key: impl Into<String>) -> Record {
        Record::new(seq, writer, key, Op::Delete)
    }

    /// An eviction.
    pub fn evict(
        seq: u64,
        writer: WriterId,
        key: impl Into<String>,
        reason: EvictReason,
    ) -> Record {
        Record::new(seq, writer, key, Op::Evict(reason))
    }

    /// The record as one line of JSON, without the trailing newline. It never contains a
    /// newline.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the record and a `\n` to `out` (for a batch written with one `write`).
    pub fn encode_line(&self, out: &mut String) {
        self.encode_into(out);
        out.push('\n');
    }

    fn encode_into(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{{\"seq\":{},\"writer\":\"{}\",\"op\":\"{}\",\"key\":",
            self.seq,
            self.writer,
            self.op.name()
        );
        raw::push_json_string(out, &self.key);
        match &self.op {
            Op::Upsert(entry) => {
                out.push_str(",\"entry\":");
                out.push_str(&raw::minify(entry.as_str()));
            }
            Op::Patch(patch) => {
                out.push_str(",\"patch\":");
                // Patches are minified when they are made.
                out.push_str(patch.as_str());
            }
            Op::Delete => {}
            Op::Evict(reason) => {
                out.push_str(",\"reason\":\"");
                out.push_str(reason.as_str());
                out.push('"');
            }
        }
        out.push('}');
    }
}

/// The first line of a journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct JournalHeader {
    /// The journal's generation, chosen by whoever created it.
    pub epoch: u64,
    /// For a journal written by a compaction, the journal it replaced and where its records
    /// were copied from; `None` for a journal created empty.
    pub base: Option<JournalBase>,
}

/// Where a compaction's new journal comes from: the journal it replaced, and the offset in
/// that journal from which the new one's records are a byte-for-byte copy.
///
/// A process that still holds the replaced journal open, with its state read up to some
/// offset of it, reaches the new files by reading journals only: the rest of the replaced
/// journal up to `offset`, then the new journal's records past what it had already read. The
/// device and inode numbers tell it that the file it holds is the one named: no other file
/// can have them while it is open. They mean nothing to anyone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct JournalBase {
    /// The replaced journal's epoch.
    pub epoch: u64,
    /// The replaced journal's device number, as `stat` gives it.
    pub dev: u64,
    /// The replaced journal's inode number, as `stat` gives it.
    pub ino: u64,
    /// Where, in the replaced journal, the copied records start: the snapshot written with the
    /// new journal holds at least every record before it.
    pub offset: u64,
}

impl JournalBase {
    /// The base of a journal whose records are copied from `offset` of the journal with this
    /// epoch, device and inode.
    pub fn new(epoch: u64, dev: u64, ino: u64, offset: u64) -> JournalBase {
        JournalBase {
            epoch,
            dev,
            ino,
            offset,
        }
    }
}

impl JournalHeader {
    /// A version-1 header with this epoch and no base.
    pub fn new(epoch: u64) -> JournalHeader {
        JournalHeader { epoch, base: None }
    }

    /// A version-1 header with this epoch and base (a compaction's new journal).
    pub fn with_base(epoch: u64, base: JournalBase) -> JournalHeader {
        JournalHeader {
            epoch,
            base: Some(base),
        }
    }

    /// The header line, with its trailing newline: `{"sessionkitJournal":1,"epoch":<epoch>}\n`,
    /// or with a base
    /// `{"sessionkitJournal":1,"epoch":<epoch>,"base":{"epoch":<e>,"dev":<d>,"ino":<i>,"offset":<o>}}\n`.
    pub fn encode_line(&self) -> String {
        match self.base {
            None => format!("{HEADER_PREFIX}{}}}\n", self.epoch),
            Some(b) => format!(
                "{HEADER_PREFIX}{},\"base\":{{\"epoch\":{},\"dev\":{},\"ino\":{},\"offset\":{}}}}}\n",
                self.epoch, b.epoch, b.dev, b.ino, b.offset
            ),
        }
    }
}

/// Bytes after the last newline: a record whose append did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TornTail {
    /// Where the torn bytes start (just past the last newline, or 0).
    pub offset: u64,
    /// How many torn bytes there are.
    pub len: u64,
}

/// A record read from a journal, with where it was.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalRecord {
    /// The 1-based line (the header is line 1).
    pub line: usize,
    /// The byte offset of the line's first byte.
    pub offset: u64,
    /// The record.
    pub record: Record,
}

/// A parsed journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParsedJournal {
    /// The header; `None` for an empty file (or one whose only line is a torn header).
    pub header: Option<JournalHeader>,
    /// The whole records, in file order.
    pub records: Vec<JournalRecord>,
    /// The length of the valid prefix: just past the last whole line. Truncating the file to
    /// this length removes exactly the torn tail.
    pub valid_len: u64,
    /// The bytes after the last newline, if any.
    pub torn_tail: Option<TornTail>,
}

/// Parses a whole journal file's bytes: the header, then the records. `path` only names the
/// file in errors. To read what was appended since an earlier read, use [`parse_records`].
///
/// Never panics, whatever the bytes.
///
/// # Errors
///
/// [`Error::CorruptJournal`] for a bad or missing header or a whole line that is not a valid
/// record, naming the line and its offset; [`Error::UnsupportedJournal`] for a header of
/// another version.
pub fn parse_journal(path: &Path, bytes: &[u8]) -> Result<ParsedJournal> {
    let mut parsed = ParsedJournal::default();
    if bytes.is_empty() {
        return Ok(parsed);
    }
    let Some(first_nl) = bytes.iter().position(|&b| b == b'\n') else {
        if is_header_prefix(bytes) {
            parsed.torn_tail = Some(TornTail {
                offset: 0,
                len: bytes.len() as u64,
            });
            return Ok(parsed);
        }
        return Err(corrupt(path, 1, 0, JournalProblem::BadHeader, None));
    };
    parsed.header = Some(parse_header(path, &bytes[..first_nl])?);
    let start = first_nl + 1;
    let rest = parse_records(path, &bytes[start..], start as u64, 2)?;
    parsed.records = rest.records;
    parsed.valid_len = rest.valid_len;
    parsed.torn_tail = rest.torn_tail;
    Ok(parsed)
}

/// Parses record lines only (no header), for reading what others appended since an earlier
/// read. `base` is the file offset of `bytes[0]` and `first_line` the line number of the first
/// line; offsets and lines in the result and in errors are the file's.
///
/// # Errors
///
/// [`Error::CorruptJournal`] for a whole line that is not a valid record.
pub fn parse_records(
    path: &Path,
    bytes: &[u8],
    base: u64,
    first_line: usize,
) -> Result<ParsedJournal> {
    let mut parsed = ParsedJournal {
        valid_len: base,
        ..ParsedJournal::default()
    };
    let mut start = 0usize;
    let mut line = first_line;
    while let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') {
        let offset = base + start as u64;
        let record = decode_record(&bytes[start..start + nl])
            .map_err(|(problem, source)| corrupt(path, line, offset, problem, source))?;
        parsed.records.push(JournalRecord {
            line,
            offset,
            record,
        });
        start += nl + 1;
        line += 1;
    }
    parsed.valid_len = base + start as u64;
    parsed.torn_tail = (start < bytes.len()).then(|| TornTail {
        offset: base + start as u64,
        len: (bytes.len() - start) as u64,
    });
    Ok(parsed)
}

fn corrupt(
    path: &Path,
    line: usize,
    offset: u64,
    problem: JournalProblem,
    source: Option<serde_json::Error>,
) -> Error {
    Error::CorruptJournal {
        path: path.to_path_buf(),
        line,
        offset,
        problem,
        source,
    }
}

/// Whether a torn first line could be the start of a header we wrote, with a base or without.
fn is_header_prefix(bytes: &[u8]) -> bool {
    use HeaderPart::{Digits, Text};
    const PLAIN: &[HeaderPart] = &[Text(HEADER_PREFIX), Digits, Text("}")];
    const BASED: &[HeaderPart] = &[
        Text(HEADER_PREFIX),
        Digits,
        Text(",\"base\":{\"epoch\":"),
        Digits,
        Text(",\"dev\":"),
        Digits,
        Text(",\"ino\":"),
        Digits,
        Text(",\"offset\":"),
        Digits,
        Text("}}"),
    ];
    is_prefix_of_shape(bytes, PLAIN) || is_prefix_of_shape(bytes, BASED)
}

/// A piece of the header line's shape: fixed text, or a number (1 to 20 decimal digits).
enum HeaderPart {
    Text(&'static str),
    Digits,
}

/// Whether `bytes` is a prefix of some line of this shape.
fn is_prefix_of_shape(mut bytes: &[u8], shape: &[HeaderPart]) -> bool {
    for part in shape {
        if bytes.is_empty() {
            return true;
        }
        let n = match part {
            HeaderPart::Text(text) => {
                let n = bytes.len().min(text.len());
                if bytes[..n] != text.as_bytes()[..n] {
                    return false;
                }
                n
            }
            HeaderPart::Digits => {
                let n = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
                if n == 0 || n > 20 {
                    return false;
                }
                n
            }
        };
        bytes = &bytes[n..];
    }
    bytes.is_empty()
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(rename = "sessionkitJournal")]
    version: u64,
    epoch: u64,
    #[serde(default)]
    base: Option<RawBase>,
}

#[derive(Deserialize)]
struct RawBase {
    epoch: u64,
    dev: u64,
    ino: u64,
    offset: u64,
}

/// The epoch in the header of a whole journal file's `bytes`, if its first line is a valid
/// header of this version.
pub(crate) fn header_epoch(bytes: &[u8]) -> Option<u64> {
    let first_nl = bytes.iter().position(|&b| b == b'\n')?;
    parse_header(Path::new(""), &bytes[..first_nl])
        .ok()
        .map(|h| h.epoch)
}

fn parse_header(path: &Path, line: &[u8]) -> Result<JournalHeader> {
    // Read the version alone first, so a newer header with other fields is reported as such.
    #[derive(Deserialize)]
    struct Version {
        #[serde(rename = "sessionkitJournal")]
        version: u64,
    }
    let bad = |source| corrupt(path, 1, 0, JournalProblem::BadHeader, source);
    let version: Version = serde_json::from_slice(line).map_err(|e| bad(Some(e)))?;
    if version.version != JOURNAL_VERSION {
        return Err(Error::UnsupportedJournal {
            path: path.to_path_buf(),
            version: version.version,
        });
    }
    let header: RawHeader = serde_json::from_slice(line).map_err(|e| bad(Some(e)))?;
    debug_assert_eq!(header.version, JOURNAL_VERSION);
    Ok(JournalHeader {
        epoch: header.epoch,
        base: header
            .base
            .map(|b| JournalBase::new(b.epoch, b.dev, b.ino, b.offset)),
    })
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    seq: u64,
    #[serde(borrow)]
    writer: &'a str,
    #[serde(borrow)]
    op: &'a str,
    key: String,
    #[serde(borrow, default)]
    entry: Option<&'a RawValue>,
    #[serde(borrow, default)]
    patch: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reason: Option<&'a str>,
}

pub(crate) type Decoded = std::result::Result<Record, (JournalProblem, Option<serde_json::Error>)>;

pub(crate) fn decode_record(line: &[u8]) -> Decoded {
    let bad = |source| (JournalProblem::BadRecord, Some(source));
    let raw: RawRecord<'_> = serde_json::from_slice(line).map_err(bad)?;
    let writer = raw
        .writer
        .parse::<WriterId>()
        .map_err(|_| (JournalProblem::BadWriter, None))?;
    let op = match raw.op {
        "upsert" => {
            let entry = raw.entry.ok_or((JournalProblem::BadRecord, None))?;
            match raw::parse_object(entry.get()) {
                Ok(Parsed::Object(fields)) => {
                    Op::Upsert(Entry::from_fields(&fields).minified().into_owned())
                }
                Ok(Parsed::NotObject(_)) => return Err((JournalProblem::EntryNotAnObject, None)),
                Err(e) => return Err(bad(e)),
            }
        }
        "patch" => {
            let patch = raw.patch.ok_or((JournalProblem::BadRecord, None))?;
            match raw::parse_object(patch.get()) {
                Ok(Parsed::Object(fields)) => Op::Patch(Patch::from_fields(&fields)),
                Ok(Parsed::NotObject(_)) => return Err((JournalProblem::PatchNotAnObject, None)),
                Err(e) => return Err(bad(e)),
            }
        }
        "delete" => Op::Delete,
        "evict" => {
            let reason = raw.reason.ok_or((JournalProblem::BadRecord, None))?;
            Op::Evict(EvictReason::parse(reason).ok_or_else(|| {
                (
                    JournalProblem::UnknownReason {
                        reason: reason.to_owned(),
                    },
                    None,
                )
            })?)
        }
        other => {
            return Err((
                JournalProblem::UnknownOp {
                    op: other.to_owned(),
                },
                None,
            ));
        }
    };
    Ok(Record {
        seq: raw.seq,
        writer,
        key: raw.key,
        op,
    })
}

/// What [`SeqTracker::observe`] decided about a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SeqCheck {
    /// The first record of this writer, or a higher `seq` than any before: apply it.
    New,
    /// Its `seq` is not higher than the last one seen from its writer: a duplicate (a retried
    /// append) or out of order. Skip it and report it; applying it again could undo later
    /// records of other writers.
    Duplicate {
        /// The highest `seq` seen before from this writer.
        last: u64,
    },
}

/// The last `seq` seen from each writer, for detecting duplicated records during replay.
///
/// Keep one per journal generation and feed it every record in file order, including those read
/// later as others append.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    last: HashMap<WriterId, u64>,
}

impl SeqTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> SeqTracker {
        SeqTracker::default()
    }

    /// Records `(writer, seq)` and says whether it is new.
    pub fn observe(&mut self, writer: WriterId, seq: u64) -> SeqCheck {
        match self.last.get_mut(&writer) {
            Some(last) if seq <= *last => SeqCheck::Duplicate { last: *last },
            Some(last) => {
                *last = seq;
                SeqCheck::New
            }
            None => {
                self.last.insert(writer, seq);
                SeqCheck::New
            }
        }
    }

    /// The highest `seq` seen from `writer`.
    pub fn last(&self, writer: WriterId) -> Option<u64> {
        self.last.get(&writer).copied()
    }

    /// How many writers have been seen.
    pub fn writers(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_prefixes() {
        for good in [
            "{",
            "{\"sessionkitJournal\":1,\"epoch\":",
            "{\"sessionkitJournal\":1,\"epoch\":12",
            "{\"sessionkitJournal\":1,\"epoch\":12}",
            "{\"sessionkitJournal\":1,\"epoch\":12,\"ba",
            "{\"sessionkitJournal\":1,\"epoch\":12,\"base\":{\"epoch\":11,\"dev\":3",
            "{\"sessionkitJournal\":1,\"epoch\":12,\"base\":{\"epoch\":11,\"dev\":3,\"ino\":4,\"offset\":5}}",
        ] {
            assert!(is_header_prefix(good.as_bytes()), "{good}");
        }
        for bad in [
            "x",
            "{\"sessionkitJournal\":2",
            "{\"sessionkitJournal\":1,\"epoch\":}",
            "{\"sessionkitJournal\":1,\"epoch\":1a",
            "{\"sessionkitJournal\":1,\"epoch\":12}}",
            "{\"sessionkitJournal\":1,\"epoch\":12,\"base\":{\"epoch\":,",
            "{\"sessionkitJournal\":1,\"epoch\":12,\"base\":{\"epoch\":11,\"ino\":4",
            "{\"sessionkitJournal\":1,\"epoch\":12,\"base\":{\"epoch\":11,\"dev\":3,\"ino\":4,\"offset\":5}}}",
            "{\"sessionkitJournal\":1,\"epoch\":123456789012345678901",
        ] {
            assert!(!is_header_prefix(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn writer_ids_are_strict() {
        assert_eq!(
            "00000000000000ff".parse::<WriterId>().unwrap(),
            WriterId::new(255)
        );
        assert_eq!(WriterId::new(255).to_string(), "00000000000000ff");
        for bad in [
            "ff",
            "00000000000000FF",
            "+0000000000000ff",
            "00000000000000fff",
            "0000000000000 ff",
        ] {
            assert!(bad.parse::<WriterId>().is_err(), "{bad}");
        }
        assert_ne!(WriterId::random(), WriterId::random());
    }

    #[test]
    fn seq_tracker_flags_repeats() {
        let (a, b) = (WriterId::new(1), WriterId::new(2));
        let mut t = SeqTracker::new();
        assert_eq!(t.observe(a, 1), SeqCheck::New);
        assert_eq!(t.observe(b, 1), SeqCheck::New);
        assert_eq!(t.observe(a, 2), SeqCheck::New);
        assert_eq!(t.observe(a, 2), SeqCheck::Duplicate { last: 2 });
        assert_eq!(t.observe(a, 1), SeqCheck::Duplicate { last: 2 });
        assert_eq!(t.last(a), Some(2));
        assert_eq!(t.writers(), 2);
    }
}
