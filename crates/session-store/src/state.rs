//! The in-memory registry: entries by key, an index by `updatedAt`, and sessionId reference
//! counts.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::Arc;

use crate::entry::{Entry, transcript_sessions};
use crate::journal::{JournalRecord, Op, Record, SeqCheck, SeqTracker, WriterId};

/// The registry in memory: every entry by session key, plus the indexes that keep maintenance
/// cheap.
///
/// - Entries are ordered by key (byte order of UTF-8), so listing a key prefix such as
///   `agent:main:` is a range scan.
/// - An index ordered by `(updatedAt, key)` gives the oldest entries in O(log n) each, for caps
///   and pruning; entries without `updatedAt` come first (OpenClaw's cap drops them first).
/// - A count of entries per `sessionId` says whether a transcript is still referenced once an
///   entry goes, and so does a count per file name for the entries whose `sessionFile` names a
///   transcript other than their session's (see [`transcript_refs`](State::transcript_refs)).
///   The counts are keyed by a 64-bit hash of the id or name (SipHash with this process's
///   random keys) rather than by a copy of it, which saves an allocation per entry. Two ids
///   with the same hash (about one chance in 10^8 for a million sessions) share a count: either
///   looks referenced while the other is, so its transcript is kept, never removed early.
///
/// Every change goes through [`apply`](State::apply) with a journal [`Record`], so the state
/// in memory is always what replaying the journal gives. Applying is idempotent: a record
/// applied twice in a row, or a whole journal applied again over the state it produced, leaves
/// the state unchanged, byte for byte. (Compaction relies on it: after a crash between writing
/// the new snapshot and replacing the journal, the old journal is replayed over the new
/// snapshot.)
#[derive(Clone, Debug, Default)]
pub struct State {
    entries: BTreeMap<Arc<str>, Entry>,
    by_updated: BTreeSet<(Option<i64>, Arc<str>)>,
    session_refs: HashMap<u64, usize>,
    /// Entries per file name of [`Entry::other_transcripts`], keyed by the same hash.
    file_refs: HashMap<u64, usize>,
    session_hasher: RandomState,
    entry_bytes: u64,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        // The indexes are functions of the entries.
        self.entries == other.entries
    }
}

impl Eq for State {}

/// Sizes of a [`State`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Stats {
    /// The number of entries.
    pub entries: usize,
    /// The bytes of all keys and entries in compact form (the snapshot is larger by its
    /// indentation).
    pub bytes: u64,
    /// The number of distinct `sessionId`s.
    pub sessions: usize,
}

/// What applying one record changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// The entry under the key before the record, if there was one.
    pub previous: Option<Entry>,
    /// A `sessionId` that no entry has any more because of this record: its `<sessionId>.jsonl`
    /// may have lost its last reference, unless another entry's `sessionFile` names it or
    /// another session's id is read in its name ([`State::transcript_refs`] says).
    pub unreferenced: Option<String>,
}

/// A record [`State::replay`] skipped because its `(writer, seq)` was seen before.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// Its line in the journal.
    pub line: usize,
    /// Its byte offset in the journal.
    pub offset: u64,
    /// Its writer.
    pub writer: WriterId,
    /// Its `seq`.
    pub seq: u64,
    /// The highest `seq` seen before from that writer.
    pub last_seq: u64,
}

/// What [`State::replay`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Records applied.
    pub applied: usize,
    /// Records skipped as duplicates, in file order.
    pub skipped: Vec<Skipped>,
    /// `sessionId`s that an applied record stopped referencing and that no entry has after the
    /// replay, sorted: their transcripts may be orphans ([`State::transcript_refs`] says).
    pub unreferenced: Vec<String>,
}

impl State {
    /// An empty registry.
    pub fn new() -> State {
        State::default()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry under `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// True if there is an entry under `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &Entry)> + '_ {
        self.entries.iter().map(|(k, e)| (&**k, e))
    }

    /// The entries whose keys come after `key` (all of them for `None`), in key order.
    pub(crate) fn after<'a>(
        &'a self,
        key: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        let start = match key {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        self.entries
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(k, e)| (&**k, e))
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (&**k, e))
    }

    /// Keys with their `updatedAt`, oldest first: entries without `updatedAt` first, then by
    /// `updatedAt`, ties by key. Reverse it for the newest first. Each step is O(log n).
    pub fn by_updated_at(&self) -> impl DoubleEndedIterator<Item = (&str, Option<i64>)> + '_ {
        self.by_updated.iter().map(|(at, k)| (&**k, *at))
    }

    /// Keys with their `updatedAt` in [`by_updated_at`](State::by_updated_at)'s order, from
    /// `start` on (an `updatedAt` and a key, which need not be in the state): a walk oldest
    /// first that resumes where it left off.
    pub(crate) fn oldest_from<'a>(
        &'a self,
        start: Bound<&(Option<i64>, String)>,
    ) -> impl Iterator<Item = (&'a str, Option<i64>)> + 'a {
        let start = start.map(|(at, key)| (*at, Arc::<str>::from(key.as_str())));
        self.by_updated
            .range((start, Bound::Unbounded))
            .map(|(at, k)| (&**k, *at))
    }

    /// The keys of entries with an `updatedAt` strictly before `cutoff_ms`, oldest first
    /// (candidates for pruning; entries without `updatedAt` are never included).
    pub fn updated_before(&self, cutoff_ms: i64) -> impl Iterator<Item = (&str, i64)> + '_ {
        let start = (Some(i64::MIN), Arc::<str>::from(""));
        self.by_updated
            .range(start..)
            .take_while(move |(at, _)| at.is_some_and(|at| at < cutoff_ms))
            .filter_map(|(at, k)| at.map(|at| (&**k, at)))
    }

    /// How many entries reference `session_id`.
    pub fn session_refs(&self, session_id: &str) -> usize {
        let hash = self.session_hasher.hash_one(session_id);
        self.session_refs.get(&hash).copied().unwrap_or(0)
    }

    /// How many entries reference the transcript named `name` in the store's directory: those
    /// whose `sessionId` is one that [`transcript_sessions`] reads in the name, and those
    /// whose `sessionFile` is a path whose file name is `name` but not a name of their
    /// session's (in whatever directory: the store may be reached through another path; the
    /// file name as this platform reads the path, and after its last `/` or `\`, for a path
    /// written on another platform).
    /// Maintenance takes a transcript for an orphan only when this is zero.
    ///
    /// ```
    /// use sessionkit_session_store::{Entry, Record, State, WriterId};
    /// # fn main() -> Result<(), sessionkit_session_store::Error> {
    /// let mut state = State::new();
    /// let entry = Entry::parse(r#"{"sessionId":"s1","sessionFile":"/srv/sessions/x.jsonl"}"#)?;
    /// state.apply(&Record::upsert(1, WriterId::new(1), "agent:a:main", &entry));
    /// assert_eq!(state.transcript_refs("s1.jsonl"), 1);
    /// assert_eq!(state.transcript_refs("s1-topic-7.jsonl"), 1);
    /// assert_eq!(state.transcript_refs("x.jsonl"), 1);
    /// assert_eq!(state.transcript_refs("s2.jsonl"), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn transcript_refs(&self, name: &str) -> usize {
        let by_name = self
            .file_refs
            .get(&self.session_hasher.hash_one(name))
            .copied()
            .unwrap_or(0);
        transcript_sessions(name)
            .map(|id| self.session_refs(id))
            .sum::<usize>()
            + by_name
    }

    /// Sizes of the registry.
    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.entries.len(),
            bytes: self.entry_bytes,
            sessions: self.session_refs.len(),
        }
    }

    /// Applies one journal record and says what it changed.
    ///
    /// `upsert` stores the entry in its journal form (whitespace outside strings removed), as
    /// replay will; `patch` merges into the existing entry, or into `{}` if there is none;
    /// `delete` and `evict` remove the key (nothing happens if it is absent).
    pub fn apply(&mut self, record: &Record) -> Applied {
        let key = record.key.as_str();
        match &record.op {
            Op::Upsert(entry) => self.put(key, entry.minified().into_owned()),
            Op::Patch(patch) => {
                let next = match self.entries.get(key) {
                    Some(existing) => existing.merge_patch(patch),
                    None => Entry::empty().merge_patch(patch),
                };
                self.put(key, next)
            }
            Op::Delete | Op::Evict(_) => self.remove(key),
        }
    }

    /// Applies journal records in order, skipping those whose `(writer, seq)` `seqs` has seen
    /// before (see [`SeqTracker`]).
    pub fn replay<'r>(
        &mut self,
        records: impl IntoIterator<Item = &'r JournalRecord>,
        seqs: &mut SeqTracker,
    ) -> ReplayReport {
        self.replay_with(records.into_iter().map(|r| (r, None)), seqs)
    }

    /// [`replay`](State::replay) of records whose patches the caller has merged already: each
    /// record comes with its key's entry after it, `Some` for a patch (what
    /// [`apply`](State::apply) would compute, which the writer computed to build the record)
    /// and `None` otherwise.
    pub(crate) fn replay_merged<'r>(
        &mut self,
        records: impl IntoIterator<Item = (&'r JournalRecord, Option<Entry>)>,
        seqs: &mut SeqTracker,
    ) -> ReplayReport {
        self.replay_with(records, seqs)
    }

    fn replay_with<'r>(
        &mut self,
        records: impl IntoIterator<Item = (&'r JournalRecord, Option<Entry>)>,
        seqs: &mut SeqTracker,
    ) -> ReplayReport {
        let mut report = ReplayReport::default();
        let mut released = BTreeSet::new();
        for (read, merged) in records {
            let record = &read.record;
            if let SeqCheck::Duplicate { last } = seqs.observe(record.writer, record.seq) {
                tracing::warn!(line = read.line, offset = read.offset, writer = %record.writer,
                    seq = record.seq, last, "skipped a duplicate journal record");
                report.skipped.push(Skipped {
                    line: read.line,
                    offset: read.offset,
                    writer: record.writer,
                    seq: record.seq,
                    last_seq: last,
                });
                continue;
            }
            let applied = match (merged, &record.op) {
                (Some(next), Op::Patch(_)) => self.put(&record.key, next),
                _ => self.apply(record),
            };
            if let Some(id) = applied.unreferenced {
                released.insert(id);
            }
            report.applied += 1;
        }
        // A session released by one record may be referenced again by a later one.
        report.unreferenced = released
            .into_iter()
            .filter(|id| self.session_refs(id) == 0)
            .collect();
        report
    }

    /// Inserts without a record: only for building a state from a snapshot.
    pub(crate) fn insert(&mut self, key: &str, entry: Entry) {
        self.put(key, entry);
    }

    fn put(&mut self, key: &str, entry: Entry) -> Applied {
        let (key, previous) = match self.entries.remove_entry(key) {
            Some((key, previous)) => (key, Some(previous)),
            None => (Arc::<str>::from(key), None),
        };
        let mut unreferenced = None;
        if let Some(old) = &previous {
            unreferenced = self.unindex(&key, old);
        }
        self.index(&key, &entry);
        if let Some(id) = &unreferenced
            && self.session_refs(id) > 0
        {
            unreferenced = None;
        }
        self.entries.insert(key, entry);
        Applied {
            previous,
            unreferenced,
        }
    }

    fn remove(&mut self, key: &str) -> Applied {
        match self.entries.remove_entry(key) {
            Some((key, old)) => {
                let unreferenced = self.unindex(&key, &old);
                Applied {
                    previous: Some(old),
                    unreferenced,
                }
            }
            None => Applied::default(),
        }
    }

    fn index(&mut self, key: &Arc<str>, entry: &Entry) {
        self.by_updated.insert((entry.updated_at(), key.clone()));
        if let Some(id) = entry.session_id() {
            let hash = self.session_hasher.hash_one(id);
            *self.session_refs.entry(hash).or_insert(0) += 1;
        }
        for file in entry.other_transcripts() {
            let hash = self.session_hasher.hash_one(&*file);
            *self.file_refs.entry(hash).or_insert(0) += 1;
        }
        self.entry_bytes += (key.len() + entry.len_bytes()) as u64;
    }

    /// Removes an entry from the indexes; returns its sessionId if that is now unreferenced.
    fn unindex(&mut self, key: &Arc<str>, entry: &Entry) -> Option<String> {
        self.by_updated.remove(&(entry.updated_at(), key.clone()));
        self.entry_bytes -= (key.len() + entry.len_bytes()) as u64;
        for file in entry.other_transcripts() {
            let hash = self.session_hasher.hash_one(&*file);
            if let Some(count) = self.file_refs.get_mut(&hash) {
                *count -= 1;
                if *count == 0 {
                    self.file_refs.remove(&hash);
                }
            }
        }
        let id = entry.session_id()?;
        let hash = self.session_hasher.hash_one(id);
        let count = self.session_refs.get_mut(&hash)?;
        *count -= 1;
        if *count == 0 {
            self.session_refs.remove(&hash);
            return Some(id.to_owned());
        }
        None
    }

    /// Checks that the indexes equal a recomputation from the entries.
    #[cfg(test)]
    pub(crate) fn check_indexes(&self) -> std::result::Result<(), String> {
        let mut rebuilt = State {
            session_hasher: self.session_hasher.clone(),
            ..State::new()
        };
        for (k, e) in &self.entries {
            rebuilt.index(k, e);
        }
        if rebuilt.by_updated != self.by_updated {
            return Err(format!(
                "updatedAt index {:?} != {:?}",
                self.by_updated, rebuilt.by_updated
            ));
        }
        if rebuilt.session_refs != self.session_refs {
            return Err(format!(
                "session refs {:?} != {:?}",
                self.session_refs, rebuilt.session_refs
            ));
        }
        if rebuilt.file_refs != self.file_refs {
            return Err(format!(
                "file refs {:?} != {:?}",
                self.file_refs, rebuilt.file_refs
            ));
        }
        if rebuilt.entry_bytes != self.entry_bytes {
            return Err(format!(
                "bytes {} != {}",
                self.entry_bytes, rebuilt.entry_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Patch;
    use crate::journal::EvictReason;
    use proptest::prelude::*;

    const KEYS: [&str; 5] = [
        "agent:a:main",
        "agent:a:x",
        "cron:n",
        "hook:1",
        "agent:b:main",
    ];
    const SESSIONS: [&str; 3] = ["s1", "s2", "s3"];
    const FILES: [&str; 8] = [
        "/srv/sessions/s1.jsonl",
        "C:\\srv\\x.jsonl",
        "s2.jsonl",
        "s1-topic-9.jsonl",
        "/srv/sessions/x.jsonl",
        "t/x.jsonl",
        "notes.txt",
        "",
    ];
    /// Transcript names to count references to.
    const NAMES: [&str; 6] = [
        "s1.jsonl",
        "s2.jsonl",
        "s1-topic-9.jsonl",
        "x.jsonl",
        "notes.txt",
        "s3-topic-1.jsonl",
    ];

    /// References to the transcript `name`, counted the slow way: entries whose session is read
    /// in the name, or whose `sessionFile` ends in it.
    fn refs_by_scan(state: &State, name: &str) -> usize {
        state
            .iter()
            .filter(|(_, e)| {
                let by_session = e
                    .session_id()
                    .is_some_and(|id| transcript_sessions(name).any(|s| s == id));
                // The last component, with `\` as a separator or not.
                let by_file = e.session_file().is_some_and(|f| {
                    let last = |seps: &[char]| f.rsplit(seps).next() == Some(name);
                    (last(&['/']) || last(&['/', '\\'])) && crate::entry::is_transcript_name(name)
                });
                by_session || by_file
            })
            .count()
    }

    fn op() -> impl Strategy<Value = Op> {
        let session = prop_oneof![
            Just(String::new()),
            prop::sample::select(&SESSIONS[..]).prop_map(|s| format!(",\"sessionId\":\"{s}\"")),
            Just(",\"sessionId\":7".to_string()),
            Just(",\"sessionId\":null".to_string()),
        ];
        let updated = prop_oneof![
            Just(String::new()),
            (0i64..5).prop_map(|t| format!(",\"updatedAt\":{t}")),
            Just(",\"updatedAt\":\"x\"".to_string()),
            Just(",\"updatedAt\":null".to_string()),
        ];
        // File names that are a session's own, another's, a topic's, not a transcript's, or
        // no string at all.
        let file = prop_oneof![
            Just(String::new()),
            prop::sample::select(&FILES[..])
                .prop_map(|f| format!(",\"sessionFile\":{}", serde_json::json!(f))),
            Just(",\"sessionFile\":7".to_string()),
            Just(",\"sessionFile\":null".to_string()),
        ];
        prop_oneof![
            (session.clone(), updated.clone(), file.clone()).prop_map(|(s, u, f)| {
                Op::Upsert(Entry::parse(&format!("{{\"n\":1{s}{u}{f}}}")).unwrap())
            }),
            (session, updated, file).prop_map(|(s, u, f)| {
                Op::Patch(Patch::parse(&format!("{{\"m\":2{s}{u}{f}}}")).unwrap())
            }),
            Just(Op::Delete),
            Just(Op::Evict(EvictReason::Cap)),
        ]
    }

    fn records() -> impl Strategy<Value = Vec<Record>> {
        prop::collection::vec((prop::sample::select(&KEYS[..]), op()), 0..40).prop_map(|ops| {
            ops.into_iter()
                .enumerate()
                .map(|(i, (key, op))| Record::new(i as u64 + 1, WriterId::new(1), key, op))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn indexes_always_equal_a_recomputation(records in records()) {
            let mut state = State::new();
            for record in &records {
                let before: HashMap<String, usize> = SESSIONS
                    .iter()
                    .map(|s| (s.to_string(), state.session_refs(s)))
                    .collect();
                let applied = state.apply(record);
                prop_assert_eq!(state.check_indexes(), Ok(()));
                for name in NAMES {
                    prop_assert_eq!(state.transcript_refs(name), refs_by_scan(&state, name), "{}", name);
                }
                // `unreferenced` names exactly a session whose count just dropped to zero.
                for s in SESSIONS {
                    let dropped = before[s] > 0 && state.session_refs(s) == 0;
                    prop_assert_eq!(dropped, applied.unreferenced.as_deref() == Some(s));
                }
            }
            let by_updated: Vec<_> = state.by_updated_at().collect();
            let mut expected: Vec<_> = state.iter().map(|(k, e)| (k, e.updated_at())).collect();
            expected.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
            prop_assert_eq!(by_updated, expected);
        }
    }

    #[test]
    fn check_indexes_notices_a_stale_index() {
        let mut state = State::new();
        let entry = Entry::parse(r#"{"sessionId":"s1","updatedAt":3}"#).unwrap();
        state.apply(&Record::upsert(1, WriterId::new(1), "k", &entry));
        assert_eq!(state.check_indexes(), Ok(()));
        let hash = state.session_hasher.hash_one("s9");
        state.session_refs.insert(hash, 1);
        assert!(state.check_indexes().is_err());
    }
}
