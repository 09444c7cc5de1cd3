//! The OpenClaw fixture: load, save, load again, byte for byte per field; corrupt snapshots;
//! quarantine.

use std::fs;
use std::time::{Duration, UNIX_EPOCH};

use sessionkit_session_store::{
    Error, SnapshotProblem, State, encode_snapshot, load_snapshot, parse_snapshot, quarantine,
    quarantine_at,
};

use crate::util::{Scratch, fixture};

const FIXTURE: &str = "openclaw-sessions.json";

/// Every entry's fields as (name, raw bytes), per key.
fn raw_fields(state: &State) -> Vec<(String, Vec<(String, String)>)> {
    state
        .iter()
        .map(|(k, e)| {
            let fields = e
                .fields()
                .into_iter()
                .map(|(n, v)| (n.into_owned(), v.get().to_owned()))
                .collect();
            (k.to_owned(), fields)
        })
        .collect()
}

#[test]
fn the_fixture_loads_with_its_indexed_fields() {
    let state = load_snapshot(fixture(FIXTURE)).unwrap();
    assert_eq!(state.len(), 5);
    let main = state.get("agent:main:main").unwrap();
    assert_eq!(
        main.session_id(),
        Some("0b7e6f7a-3c1d-4e2f-9a8b-1c2d3e4f5a6b")
    );
    assert_eq!(main.updated_at(), Some(1_763_708_000_000));
    // Numbers, escapes and nested layout keep their bytes.
    assert_eq!(main.get("inputTokens").unwrap().get(), "1e3");
    assert_eq!(main.get("queueDebounceMs").unwrap().get(), "1.0");
    assert_eq!(
        main.get("displayName").unwrap().get(),
        r#""Ren\u00e9e's phone""#
    );
    assert_eq!(
        main.get("deliveryContext").unwrap().get(),
        "{\n      \"channel\": \"telegram\",\n      \"to\": \"+4915112345678\",\n      \"accountId\": \"default\",\n      \"threadId\": null\n    }"
    );
    let legacy = state.get("agent:legacy:main").unwrap();
    assert_eq!(legacy.updated_at(), None);
    // Two entries share the main session's transcript.
    assert_eq!(
        state.session_refs("0b7e6f7a-3c1d-4e2f-9a8b-1c2d3e4f5a6b"),
        2
    );
    let oldest: Vec<&str> = state.by_updated_at().map(|(k, _)| k).take(2).collect();
    assert_eq!(oldest, ["agent:legacy:main", "cron:nightly-report"]);
    // The compact form in memory is smaller than the pretty file.
    let file_len = fs::metadata(fixture(FIXTURE)).unwrap().len();
    assert!(
        state.stats().bytes < file_len,
        "{:?} vs {file_len}",
        state.stats()
    );
}

#[test]
fn load_save_load_keeps_every_field_byte_for_byte() {
    let original = fs::read(fixture(FIXTURE)).unwrap();
    let state = load_snapshot(fixture(FIXTURE)).unwrap();
    let saved = encode_snapshot(&state);
    let reloaded = parse_snapshot(std::path::Path::new("saved"), &saved).unwrap();
    assert_eq!(raw_fields(&reloaded), raw_fields(&state));
    assert_eq!(reloaded, state);
    // Saving again is stable.
    assert_eq!(encode_snapshot(&reloaded), saved);
    // Same JSON value as the original.
    let a: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(a, b);
    // Each entry is written back exactly as OpenClaw wrote it; only the key order changed.
    let original = String::from_utf8(original).unwrap();
    let saved = String::from_utf8(saved).unwrap();
    for (key, _) in state.iter() {
        let block = |text: &str| {
            let start = text.find(&format!("\n  \"{key}\": {{")).unwrap();
            let end = start + text[start..].find("\n  }").unwrap();
            text[start..end].to_owned()
        };
        assert_eq!(block(&saved), block(&original), "{key}");
    }
    assert!(saved.starts_with("{\n  \"agent:legacy:main\": {\n    \"sessionId\""));
    assert!(saved.ends_with("\n  }\n}\n"));
}

#[test]
fn empty_states_and_entries_are_written_like_json_stringify() {
    assert_eq!(encode_snapshot(&State::new()), b"{}\n");
    let state = parse_snapshot("x".as_ref(), br#"{"b":{},"a":{"k":[1,2]}}"#).unwrap();
    assert_eq!(
        String::from_utf8(encode_snapshot(&state)).unwrap(),
        "{\n  \"a\": {\n    \"k\": [1,2]\n  },\n  \"b\": {}\n}\n"
    );
}

#[test]
fn a_missing_snapshot_is_an_empty_registry() {
    let dir = Scratch::new("missing");
    assert!(load_snapshot(dir.join("sessions.json")).unwrap().is_empty());
}

#[test]
fn duplicate_keys_keep_the_last_entry() {
    let state = parse_snapshot(
        "x".as_ref(),
        br#"{"k":{"sessionId":"a"},"j":{},"k":{"sessionId":"b"}}"#,
    )
    .unwrap();
    assert_eq!(state.get("k").unwrap().session_id(), Some("b"));
    assert_eq!(state.session_refs("a"), 0);
    assert_eq!(state.len(), 2);
}

fn corrupt(bytes: &[u8]) -> (usize, usize, SnapshotProblem) {
    match parse_snapshot("/r/sessions.json".as_ref(), bytes).unwrap_err() {
        err @ Error::CorruptSnapshot { .. } => {
            assert!(err.is_corrupt());
            assert_eq!(err.path(), Some("/r/sessions.json".as_ref()));
            let Error::CorruptSnapshot {
                line,
                column,
                problem,
                ..
            } = err
            else {
                unreachable!()
            };
            (line, column, problem)
        }
        other => panic!("expected a corrupt snapshot, got {other:?}"),
    }
}

#[test]
fn corrupt_snapshots_name_the_place() {
    assert_eq!(corrupt(b""), (1, 0, SnapshotProblem::Empty));
    assert_eq!(corrupt(b"[]"), (1, 1, SnapshotProblem::NotAnObject));
    assert_eq!(corrupt(b"\n  null"), (2, 3, SnapshotProblem::NotAnObject));
    assert_eq!(
        corrupt(b"{\n  \"a\": {},\n  \"b\": [1]\n}"),
        (3, 8, SnapshotProblem::EntryNotAnObject { key: "b".into() })
    );
    let (line, _, problem) = corrupt(b"{\n  \"a\": {\n    \"x\": 1,\n  }\n}");
    assert_eq!((line, problem), (4, SnapshotProblem::InvalidJson));
    let (line, _, problem) = corrupt(b"{\"a\":{}}\n{");
    assert_eq!((line, problem), (2, SnapshotProblem::InvalidJson));
    // Whitespace only, a truncated file, invalid UTF-8.
    assert_eq!(corrupt(b"  \n").2, SnapshotProblem::InvalidJson);
    assert_eq!(corrupt(b"{\"a\":{\"b\":").2, SnapshotProblem::InvalidJson);
    assert_eq!(
        corrupt(b"{\"a\":{\"b\":\"\xff\"}}"),
        (1, 12, SnapshotProblem::InvalidUtf8)
    );
    assert_eq!(
        corrupt(b"{\n  \"a\": \xc3}"),
        (2, 8, SnapshotProblem::InvalidUtf8)
    );
    // A syntax error before the bad byte is the one named.
    let (line, column, problem) = corrupt(b"{\"a\" {}, \"b\": \"\xff\"}");
    assert_eq!((line, problem), (1, SnapshotProblem::InvalidJson));
    assert!(column < 14, "{column}");
    assert_eq!(corrupt(b"\xef\xbb\xbf{}").2, SnapshotProblem::InvalidJson);
}

#[test]
fn corrupt_snapshot_messages_say_what_and_where() {
    let message = |bytes: &[u8]| {
        parse_snapshot("/r/sessions.json".as_ref(), bytes)
            .unwrap_err()
            .to_string()
    };
    // An empty file has no place to name.
    assert_eq!(
        message(b""),
        "`/r/sessions.json` is corrupt: the file is empty"
    );
    assert_eq!(
        message(b"{\"a\":{\"b\":\"\xff\"}}"),
        "`/r/sessions.json` is corrupt: the bytes are not UTF-8 at line 1, column 12"
    );
    assert_eq!(
        message(b"[]"),
        "`/r/sessions.json` is corrupt: the top level is not a JSON object at line 1, column 1"
    );
}

#[test]
fn every_truncation_of_the_fixture_is_corrupt_not_empty() {
    let bytes = fs::read(fixture(FIXTURE)).unwrap();
    // The closing brace is followed only by a newline, so every shorter cut loses JSON.
    let full = bytes.len() - 1;
    for cut in 0..full {
        let err = parse_snapshot("x".as_ref(), &bytes[..cut]).unwrap_err();
        assert!(err.is_corrupt(), "cut {cut}: {err:?}");
    }
    assert_eq!(
        parse_snapshot("x".as_ref(), &bytes[..full]).unwrap().len(),
        5
    );
}

#[test]
fn quarantine_renames_aside_with_a_utc_stamp_and_never_overwrites() {
    let dir = Scratch::new("quarantine");
    let path = dir.join("sessions.json");
    let at = UNIX_EPOCH + Duration::from_millis(1_795_246_212_123);
    fs::write(&path, b"{broken").unwrap();
    let first = quarantine_at(&path, at).unwrap();
    assert_eq!(
        first,
        dir.join("sessions.json.corrupt.20261121T073012.123Z")
    );
    assert_eq!(fs::read(&first).unwrap(), b"{broken");
    assert!(!path.exists());

    for (i, content) in [&b"second"[..], b"third"].into_iter().enumerate() {
        fs::write(&path, content).unwrap();
        let next = quarantine_at(&path, at).unwrap();
        assert_eq!(
            next,
            dir.join(format!(
                "sessions.json.corrupt.20261121T073012.123Z.{}",
                i + 1
            ))
        );
        assert_eq!(fs::read(&next).unwrap(), content);
    }
    assert_eq!(fs::read(&first).unwrap(), b"{broken");
    assert_eq!(dir.names().len(), 3);

    fs::write(&path, b"now").unwrap();
    let stamped = quarantine(&path).unwrap();
    let name = stamped.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("sessions.json.corrupt.2"), "{name}");
    assert!(
        name.ends_with('Z') && name.len() == "sessions.json.corrupt.".len() + 20,
        "{name}"
    );
}

#[test]
fn quarantine_of_a_missing_file_is_not_found_and_leaves_nothing() {
    let dir = Scratch::new("quarantine-missing");
    let err = quarantine(dir.join("sessions.json")).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(!err.is_corrupt());
    assert!(err.to_string().contains("sessions.json"), "{err}");
    assert!(dir.names().is_empty());
    assert_eq!(dir.path().read_dir().unwrap().count(), 0);
}
