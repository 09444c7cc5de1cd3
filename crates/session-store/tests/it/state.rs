//! The in-memory state: apply, listing, the updatedAt index, references and replay.

use sessionkit_session_store::{
    Entry, EvictReason, JournalHeader, Patch, Record, SeqTracker, State, WriterId, parse_journal,
};

const W: WriterId = WriterId::new(1);

fn entry(text: &str) -> Entry {
    Entry::parse(text).unwrap()
}

fn upsert(seq: u64, key: &str, text: &str) -> Record {
    Record::upsert(seq, W, key, &entry(text))
}

fn sample() -> State {
    let mut state = State::new();
    for (i, (key, text)) in [
        ("agent:main:main", r#"{"sessionId":"s1","updatedAt":30}"#),
        (
            "agent:main:telegram:group:1",
            r#"{"sessionId":"s1","updatedAt":10}"#,
        ),
        ("agent:mainx:main", r#"{"sessionId":"s2","updatedAt":20}"#),
        ("cron:nightly", r#"{"sessionId":"s3"}"#),
        ("hook:1", r#"{"updatedAt":10}"#),
    ]
    .into_iter()
    .enumerate()
    {
        state.apply(&upsert(i as u64 + 1, key, text));
    }
    state
}

#[test]
fn listing_by_prefix_and_by_age() {
    let state = sample();
    let main: Vec<&str> = state.with_prefix("agent:main:").map(|(k, _)| k).collect();
    assert_eq!(main, ["agent:main:main", "agent:main:telegram:group:1"]);
    assert_eq!(state.with_prefix("").count(), 5);
    assert_eq!(state.with_prefix("zzz").count(), 0);

    let by_age: Vec<(&str, Option<i64>)> = state.by_updated_at().collect();
    assert_eq!(
        by_age,
        [
            ("cron:nightly", None),
            ("agent:main:telegram:group:1", Some(10)),
            ("hook:1", Some(10)),
            ("agent:mainx:main", Some(20)),
            ("agent:main:main", Some(30)),
        ]
    );
    assert_eq!(
        state.by_updated_at().next_back(),
        Some(("agent:main:main", Some(30)))
    );
    let prunable: Vec<(&str, i64)> = state.updated_before(20).collect();
    assert_eq!(
        prunable,
        [("agent:main:telegram:group:1", 10), ("hook:1", 10)]
    );
    assert_eq!(state.updated_before(i64::MIN).count(), 0);

    let stats = state.stats();
    assert_eq!((stats.entries, stats.sessions), (5, 3));
    let bytes: usize = state.iter().map(|(k, e)| k.len() + e.len_bytes()).sum();
    assert_eq!(stats.bytes, bytes as u64);
}

#[test]
fn apply_reports_previous_entries_and_released_sessions() {
    let mut state = sample();
    assert_eq!(state.session_refs("s1"), 2);

    // Removing one of two references releases nothing.
    let applied = state.apply(&Record::evict(10, W, "agent:main:main", EvictReason::Cap));
    assert_eq!(applied.previous.unwrap().session_id(), Some("s1"));
    assert_eq!(applied.unreferenced, None);
    // Moving the last reference to another session releases it.
    let p = Patch::parse(r#"{"sessionId":"s9"}"#).unwrap();
    let applied = state.apply(&Record::patch(11, W, "agent:main:telegram:group:1", p));
    assert_eq!(applied.unreferenced.as_deref(), Some("s1"));
    assert_eq!(state.session_refs("s1"), 0);
    assert_eq!(state.session_refs("s9"), 1);
    // Re-upserting the same session releases nothing.
    let applied = state.apply(&upsert(
        12,
        "cron:nightly",
        r#"{"sessionId":"s3","updatedAt":1}"#,
    ));
    assert_eq!(applied.unreferenced, None);
    assert_eq!(applied.previous.unwrap().as_str(), r#"{"sessionId":"s3"}"#);
    // Deleting a missing key changes nothing.
    let before = state.clone();
    let applied = state.apply(&Record::delete(13, W, "nope"));
    assert_eq!((applied.previous, applied.unreferenced), (None, None));
    assert_eq!(state, before);
    let applied = state.apply(&Record::delete(14, W, "agent:mainx:main"));
    assert_eq!(applied.unreferenced.as_deref(), Some("s2"));
    assert!(!state.contains_key("agent:mainx:main"));
}

#[test]
fn a_patch_to_a_missing_key_creates_the_entry() {
    let mut state = State::new();
    let p = Patch::parse(r#"{"sessionId":"s","x":null,"o":{"a":null,"b":1}}"#).unwrap();
    let applied = state.apply(&Record::patch(1, W, "k", p));
    assert_eq!(applied.previous, None);
    assert_eq!(
        state.get("k").unwrap().as_str(),
        r#"{"sessionId":"s","o":{"b":1}}"#
    );
    assert_eq!(state.session_refs("s"), 1);
}

#[test]
fn upserts_store_the_journal_form() {
    let mut state = State::new();
    let pretty = entry("{\n  \"a\": [\n    1,\n    2\n  ],\n  \"s\": \" x \"\n}");
    state.apply(&sessionkit_session_store::Record::new(
        1,
        W,
        "k",
        sessionkit_session_store::Op::Upsert(pretty),
    ));
    assert_eq!(state.get("k").unwrap().as_str(), r#"{"a":[1,2],"s":" x "}"#);
}

#[test]
fn replay_skips_duplicated_records_and_reports_them() {
    let a = WriterId::new(0xa);
    let b = WriterId::new(0xb);
    let e1 = entry(r#"{"sessionId":"s1","v":1}"#);
    let e2 = entry(r#"{"sessionId":"s2","v":2}"#);
    let mut text = JournalHeader::new(1).encode_line();
    for r in [
        Record::upsert(1, a, "k", &e1),
        Record::upsert(1, b, "k", &e2),
        // A retried append of a's first record: applying it would undo b's.
        Record::upsert(1, a, "k", &e1),
        Record::delete(2, b, "other"),
    ] {
        r.encode_line(&mut text);
    }
    let journal = parse_journal("j".as_ref(), text.as_bytes()).unwrap();
    let mut state = State::new();
    let mut seqs = SeqTracker::new();
    let report = state.replay(&journal.records, &mut seqs);
    assert_eq!(report.applied, 3);
    assert_eq!(report.skipped.len(), 1);
    let skipped = &report.skipped[0];
    assert_eq!(
        (skipped.line, skipped.writer, skipped.seq, skipped.last_seq),
        (4, a, 1, 1)
    );
    assert_eq!(skipped.offset, journal.records[2].offset);
    assert_eq!(state.get("k").unwrap().session_id(), Some("s2"));
    // s1 was referenced during the replay, but not before or after it: it was never in the
    // state, so it is reported as released by the replay.
    assert_eq!(report.unreferenced, ["s1"]);
    assert_eq!(seqs.last(a), Some(1));
    assert_eq!(seqs.last(b), Some(2));
}
