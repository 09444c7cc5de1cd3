//! Property tests: merge patch against a reference implementation, journal round trips,
//! truncations and damage, replay idempotence, snapshot round trips.
//!
//! A failure here means a format or replay guarantee is broken; proptest prints the smallest
//! input it found, and saves it under `proptest-regressions/` so it is tried again first.

use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;
use sessionkit_session_store::{
    Entry, Error, JournalBase, JournalHeader, Patch, Record, State, encode_snapshot, parse_journal,
    parse_snapshot, resolve_updated_at,
};

use crate::strategies::{entry, entry_text, journal_records, patch, patch_text, record};

/// RFC 7396 section 2, on `serde_json::Value`.
fn reference_merge(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut target = match target {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    for (name, value) in patch {
        if value.is_null() {
            target.remove(name);
        } else {
            let merged = reference_merge(target.get(name).unwrap_or(&Value::Null), value);
            target.insert(name.clone(), merged);
        }
    }
    Value::Object(target)
}

fn journal_text(records: &[Record]) -> String {
    journal_text_under(JournalHeader::new(3), records)
}

fn journal_text_under(header: JournalHeader, records: &[Record]) -> String {
    let mut text = header.encode_line();
    for r in records {
        r.encode_line(&mut text);
    }
    text
}

/// A header as the store writes one: plain at open, with a base at compaction.
fn header() -> impl Strategy<Value = JournalHeader> {
    let base = (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>())
        .prop_map(|(epoch, dev, ino, offset)| JournalBase::new(epoch, dev, ino, offset));
    (any::<u64>(), prop::option::of(base)).prop_map(|(epoch, base)| match base {
        Some(base) => JournalHeader::with_base(epoch, base),
        None => JournalHeader::new(epoch),
    })
}

fn apply_all(state: &mut State, records: &[Record]) {
    for r in records {
        state.apply(r);
    }
}

fn path() -> &'static Path {
    Path::new("sessions.json.journal")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn merge_patch_agrees_with_the_reference(target in entry_text(), p in patch_text()) {
        let entry = Entry::parse(&target).unwrap();
        let patch = Patch::parse(&p).unwrap();
        let merged = entry.merge_patch(&patch);
        let target_value: Value = serde_json::from_str(&target).unwrap();
        let patch_value: Value = serde_json::from_str(&p).unwrap();
        prop_assert_eq!(merged.to_value(), reference_merge(&target_value, &patch_value));
        // The text is valid JSON and parses to itself.
        prop_assert_eq!(&Entry::parse(merged.as_str()).unwrap(), &merged);
    }

    #[test]
    fn untouched_fields_keep_their_bytes(e in entry(), p in patch()) {
        let merged = e.merge_patch(&p);
        let touched: Vec<String> = p.to_value().as_object().unwrap().keys().cloned().collect();
        let untouched: Vec<(String, String)> = e
            .fields()
            .into_iter()
            .filter(|(n, _)| !touched.iter().any(|t| t == n))
            .map(|(n, v)| (n.into_owned(), v.get().to_owned()))
            .collect();
        // Same bytes, same relative order, and first.
        let head: Vec<(String, String)> = merged
            .fields()
            .into_iter()
            .take(untouched.len())
            .map(|(n, v)| (n.into_owned(), v.get().to_owned()))
            .collect();
        prop_assert_eq!(head, untouched);
        // The indexed fields follow the text.
        let v = merged.to_value();
        prop_assert_eq!(merged.session_id(), v.get("sessionId").and_then(Value::as_str));
    }

    #[test]
    fn a_patch_applied_twice_is_applied_once(e in entry(), p in patch()) {
        let once = e.merge_patch(&p);
        prop_assert_eq!(once.merge_patch(&p), once);
    }

    #[test]
    fn resolve_updated_at_is_clamped_and_monotone_up_to_now(
        existing in proptest::option::of(any::<i64>()),
        patch_at in proptest::option::of(any::<i64>()),
        now in any::<i64>(),
    ) {
        let at = resolve_updated_at(existing, patch_at, now);
        prop_assert!(at <= now);
        // It never goes behind any input that is not in the future.
        for input in existing.into_iter().chain(patch_at) {
            prop_assert!(at >= input.min(now));
        }
        prop_assert_eq!(at, now);
        // The order of the inputs does not matter.
        prop_assert_eq!(resolve_updated_at(patch_at, existing, now), at);
    }

    #[test]
    fn journal_encode_parse_round_trips(
        header in header(),
        records in prop::collection::vec(record(), 0..12),
    ) {
        let text = journal_text_under(header, &records);
        for r in &records {
            let line = r.encode();
            prop_assert!(!line.contains('\n') && !line.contains('\r'), "{}", line);
        }
        let parsed = parse_journal(path(), text.as_bytes()).unwrap();
        prop_assert_eq!(parsed.header, Some(header));
        prop_assert_eq!(parsed.valid_len, text.len() as u64);
        prop_assert!(parsed.torn_tail.is_none());
        let got: Vec<Record> = parsed.records.into_iter().map(|r| r.record).collect();
        prop_assert_eq!(got, records);
    }

    #[test]
    fn every_truncation_gives_the_whole_records_before_the_cut(
        header in header(),
        records in prop::collection::vec(record(), 0..6),
    ) {
        // A cut inside the header leaves a fresh journal with a torn tail, with a base or not.
        let text = journal_text_under(header, &records);
        let bytes = text.as_bytes();
        // Line ends: the header's, then each record's.
        let ends: Vec<usize> = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        for cut in 0..=bytes.len() {
            let parsed = parse_journal(path(), &bytes[..cut]).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            let valid = ends.iter().copied().filter(|&e| e <= cut).max().unwrap_or(0);
            prop_assert_eq!(parsed.header.is_some(), whole >= 1, "cut {}", cut);
            prop_assert_eq!(parsed.records.len(), whole.saturating_sub(1), "cut {}", cut);
            for (got, want) in parsed.records.iter().zip(&records) {
                prop_assert_eq!(&got.record, want);
            }
            prop_assert_eq!(parsed.valid_len, valid as u64);
            let torn = parsed.torn_tail.map(|t| (t.offset, t.len));
            let expected = (cut > valid).then_some((valid as u64, (cut - valid) as u64));
            prop_assert_eq!(torn, expected, "cut {}", cut);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(
        prop_oneof![any::<u8>(), Just(b'\n'), Just(b'{'), Just(b'}'), Just(b'"')], 0..400)) {
        match parse_journal(path(), &bytes) {
            Ok(parsed) => {
                let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
                prop_assert_eq!(parsed.records.len(), newlines.saturating_sub(1));
                prop_assert!(parsed.valid_len <= bytes.len() as u64);
            }
            Err(e) => prop_assert!(e.is_corrupt() || e.is_unsupported(), "{:?}", e),
        }
        if let Err(e) = parse_snapshot(path(), &bytes) {
            prop_assert!(e.is_corrupt(), "{:?}", e);
        }
    }

    #[test]
    fn flipped_bytes_never_panic_and_never_lose_the_prefix(
        records in prop::collection::vec(record(), 1..6),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let text = journal_text(&records);
        let mut bytes = text.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        // The whole lines before the damaged one: the header, then `intact` records.
        let line_start = bytes[..i].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let intact = bytes[..line_start].iter().filter(|&&b| b == b'\n').count().saturating_sub(1);
        let parsed = match parse_journal(path(), &bytes) {
            Ok(parsed) => parsed,
            Err(Error::CorruptJournal { offset, .. }) => {
                // The damage is found no earlier than its line, so recovery, which keeps what
                // comes before the offset, keeps every intact record.
                prop_assert!(offset >= line_start as u64, "damage at {} reported at {}", i, offset);
                let kept = usize::try_from(offset).unwrap().min(bytes.len());
                match parse_journal(path(), &bytes[..kept]) {
                    Ok(parsed) => parsed,
                    // A damaged header leaves nothing to keep.
                    Err(e) => {
                        prop_assert_eq!(intact, 0, "{:?}", e);
                        return Ok(());
                    }
                }
            }
            Err(e) => {
                prop_assert!(e.is_unsupported(), "{:?}", e);
                prop_assert_eq!(line_start, 0, "only a damaged header makes a version unsupported");
                return Ok(());
            }
        };
        prop_assert!(parsed.records.len() >= intact, "{} records read, {} intact", parsed.records.len(), intact);
        for (got, want) in parsed.records.iter().zip(&records[..intact]) {
            prop_assert_eq!(&got.record, want);
        }
    }

    #[test]
    fn replaying_a_journal_twice_is_replaying_it_once(
        base in journal_records(8),
        journal in journal_records(24),
    ) {
        let mut s = State::new();
        apply_all(&mut s, &base);
        let mut once = s.clone();
        apply_all(&mut once, &journal);
        let mut twice = once.clone();
        apply_all(&mut twice, &journal);
        prop_assert_eq!(&twice, &once);
        // Byte for byte, including the snapshot written from it.
        prop_assert_eq!(encode_snapshot(&twice), encode_snapshot(&once));
        // Each record applied twice in a row is applied once.
        let mut stepwise = s;
        for r in &journal {
            stepwise.apply(r);
            let after = stepwise.clone();
            stepwise.apply(r);
            prop_assert_eq!(&stepwise, &after);
        }
        prop_assert_eq!(&stepwise, &once);
    }

    #[test]
    fn an_old_journal_over_the_compacted_snapshot_changes_nothing(
        base in journal_records(8),
        journal in journal_records(24),
    ) {
        // The crash compaction must survive: the new snapshot is written, the journal it
        // absorbed is not yet replaced, and recovery replays that journal from the file over
        // the snapshot read back from disk.
        let mut live = State::new();
        apply_all(&mut live, &base);
        apply_all(&mut live, &journal);
        let snapshot = encode_snapshot(&live);
        let mut recovered = parse_snapshot(path(), &snapshot).unwrap();
        prop_assert_eq!(&recovered, &live);
        let file = journal_text(&journal);
        let parsed = parse_journal(path(), file.as_bytes()).unwrap();
        let records: Vec<Record> = parsed.records.into_iter().map(|r| r.record).collect();
        apply_all(&mut recovered, &records);
        prop_assert_eq!(&recovered, &live);
        prop_assert_eq!(encode_snapshot(&recovered), snapshot);
    }

    #[test]
    fn state_from_the_file_equals_state_in_memory(journal in journal_records(24)) {
        let mut memory = State::new();
        apply_all(&mut memory, &journal);
        let file = journal_text(&journal);
        let parsed = parse_journal(path(), file.as_bytes()).unwrap();
        let mut replayed = State::new();
        let report = replayed.replay(&parsed.records, &mut Default::default());
        prop_assert_eq!(report.applied, journal.len());
        prop_assert!(report.skipped.is_empty());
        prop_assert_eq!(&replayed, &memory);
        // The indexes agree too.
        prop_assert_eq!(replayed.by_updated_at().collect::<Vec<_>>(), memory.by_updated_at().collect::<Vec<_>>());
        prop_assert_eq!(replayed.stats(), memory.stats());
    }

    #[test]
    fn snapshots_round_trip(journal in journal_records(24)) {
        let mut state = State::new();
        apply_all(&mut state, &journal);
        let bytes = encode_snapshot(&state);
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let expected: serde_json::Map<String, Value> =
            state.iter().map(|(k, e)| (k.to_owned(), e.to_value())).collect();
        prop_assert_eq!(value, Value::Object(expected));
        let back = parse_snapshot(path(), &bytes).unwrap();
        prop_assert_eq!(&back, &state);
        prop_assert_eq!(back.stats(), state.stats());
    }
}
