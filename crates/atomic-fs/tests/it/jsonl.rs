//! JSONL records: appends, offsets, torn tails, repair and concurrent appenders.

use std::fs;
use std::io::Write;
use std::sync::Arc;

use serde::Deserialize;
use sessionkit_atomic_fs::{
    Durability, Error, RecordAppender, Refusal, append_record, directory_turns_taken,
    find_torn_tail, read_jsonl, read_records, read_records_from, repair_torn_tail,
};

use crate::util::{Call, RecordingFs, Scratch, mode_of};

#[test]
fn only_changes_to_the_directory_take_its_turn() {
    let dir = Scratch::new("turns");
    let path = dir.join("s.jsonl");
    let before = directory_turns_taken();
    append_record(&path, b"{}").unwrap();
    // The first append creates the file; the next only writes to it.
    assert_eq!(directory_turns_taken() - before, 1);
    append_record(&path, b"{}").unwrap();
    assert_eq!(directory_turns_taken() - before, 1);
    // A replace creates its temp file and renames it over the target.
    sessionkit_atomic_fs::write(dir.join("t.json"), b"{}").unwrap();
    assert_eq!(directory_turns_taken() - before, 3);
}

#[test]
fn append_returns_offsets_and_creates_0600() {
    let dir = Scratch::new("append");
    let path = dir.join("s.jsonl");
    let a = append_record(&path, b"{\"n\":1}").unwrap();
    let b = append_record(&path, b"{\"n\":22}").unwrap();
    assert_eq!((a.offset, a.len), (0, 8));
    assert_eq!((b.offset, b.len), (8, 9));
    assert_eq!(fs::read(&path).unwrap(), b"{\"n\":1}\n{\"n\":22}\n");
    assert_eq!(mode_of(&path), 0o600);
}

#[test]
fn one_write_per_record_then_sync() {
    let dir = Scratch::new("append1");
    let path = dir.join("s.jsonl");
    fs::write(&path, b"").unwrap();
    let rec = Arc::new(RecordingFs::default());
    RecordAppender::new()
        .sync(true)
        .file_system(rec.clone())
        .append(&path, b"{}")
        .unwrap();
    assert_eq!(rec.calls(), [Call::OpenAppend, Call::Write, Call::SyncData]);
}

#[test]
fn synced_append_that_creates_the_file_syncs_the_directory() {
    let dir = Scratch::new("append2");
    let rec = Arc::new(RecordingFs::default());
    RecordAppender::new()
        .sync(true)
        .file_system(rec.clone())
        .append(dir.join("n.jsonl"), b"{}")
        .unwrap();
    assert_eq!(
        rec.calls(),
        [
            Call::OpenAppend,
            Call::OpenAppend,
            Call::Write,
            Call::SyncData,
            Call::SyncDir
        ]
    );
}

#[test]
fn newline_and_empty_records_are_refused_and_write_nothing() {
    let dir = Scratch::new("append3");
    let path = dir.join("s.jsonl");
    append_record(&path, b"{}").unwrap();
    let err = append_record(&path, b"{\"a\":\n1}").unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::RecordHasNewline));
    assert!(err.is_bad_input());
    let err = append_record(&path, b"").unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::RecordEmpty));
    assert_eq!(fs::read(&path).unwrap(), b"{}\n");
}

#[test]
fn append_json_escapes_newlines_in_strings() {
    let dir = Scratch::new("append4");
    let path = dir.join("s.jsonl");
    RecordAppender::new()
        .append_json(&path, &serde_json::json!({"text": "two\nlines"}))
        .unwrap();
    let read = read_jsonl::<serde_json::Value>(&path).unwrap();
    assert_eq!(read.values, [serde_json::json!({"text": "two\nlines"})]);
}

#[test]
fn torn_tail_is_reported_with_offset_and_length() {
    let dir = Scratch::new("torn");
    let path = dir.join("s.jsonl");
    fs::write(&path, b"{\"n\":1}\n{\"n\":2}\n{\"n\":").unwrap();
    let read = read_records(&path).unwrap();
    assert_eq!(read.records.len(), 2);
    assert_eq!(read.records[1].offset, 8);
    assert_eq!(read.records[1].bytes, b"{\"n\":2}");
    let torn = read.torn_tail.unwrap();
    assert_eq!((torn.offset, torn.len), (16, 5));
    assert_eq!(read.end, 16);

    #[derive(Deserialize, Debug, PartialEq)]
    struct N {
        n: u32,
    }
    let typed = read_jsonl::<N>(&path).unwrap();
    assert_eq!(typed.values, [N { n: 1 }, N { n: 2 }]);
    assert_eq!(typed.torn_tail, Some(torn));
}

#[test]
fn repair_cuts_exactly_the_torn_tail() {
    let dir = Scratch::new("repair");
    let path = dir.join("s.jsonl");
    fs::write(&path, b"{\"n\":1}\n{\"n\":").unwrap();
    let repair = repair_torn_tail(&path, Durability::Durable).unwrap();
    assert_eq!((repair.removed, repair.len), (5, 8));
    assert_eq!(fs::read(&path).unwrap(), b"{\"n\":1}\n");
    // Nothing to do the second time.
    let again = repair_torn_tail(&path, Durability::Durable).unwrap();
    assert_eq!((again.removed, again.len), (0, 8));
}

#[test]
fn repair_finds_a_newline_far_back() {
    let dir = Scratch::new("repair2");
    let path = dir.join("s.jsonl");
    let mut bytes = b"{}\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 200_000));
    fs::write(&path, &bytes).unwrap();
    let repair = repair_torn_tail(&path, Durability::AtomicOnly).unwrap();
    assert_eq!((repair.removed, repair.len), (200_000, 3));
    // A file with no newline at all is one torn record.
    fs::write(&path, b"{\"partial\"").unwrap();
    assert_eq!(
        repair_torn_tail(&path, Durability::AtomicOnly).unwrap().len,
        0
    );
    assert!(
        repair_torn_tail(dir.join("missing"), Durability::Durable)
            .unwrap_err()
            .is_not_found()
    );
}

#[test]
fn read_from_an_offset_sees_only_later_records() {
    let dir = Scratch::new("from");
    let path = dir.join("s.jsonl");
    append_record(&path, b"1").unwrap();
    let first = read_records(&path).unwrap();
    append_record(&path, b"2").unwrap();
    append_record(&path, b"3").unwrap();
    let more = read_records_from(&path, first.end).unwrap();
    let got: Vec<_> = more.records.iter().map(|r| r.bytes.clone()).collect();
    assert_eq!(got, [b"2".to_vec(), b"3".to_vec()]);
    assert_eq!(more.records[0].offset, 2);
    let err = read_records_from(&path, 1000).unwrap_err();
    assert!(err.to_string().contains("read"), "{err}");
    assert!(
        err.io_error().unwrap().to_string().contains("past the end"),
        "{err:?}"
    );
}

#[test]
fn corrupt_record_names_its_line_and_offset() {
    let dir = Scratch::new("jsonlbad");
    let path = dir.join("s.jsonl");
    fs::write(&path, b"{\"n\":1}\n{\"n\":2}\nnot json\n{\"n\":4}\n").unwrap();
    let err = read_jsonl::<serde_json::Value>(&path).unwrap_err();
    let Error::Corrupt { line, offset, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*line, *offset), (3, 16));
}

#[test]
fn concurrent_appenders_never_interleave() {
    let dir = Scratch::new("concurrent");
    let path = Arc::new(dir.join("s.jsonl"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    // Records of different sizes, some larger than a page.
                    let body = "x".repeat((t * 997 + i * 31) % 9000);
                    let record = format!("{{\"t\":{t},\"i\":{i},\"body\":\"{body}\"}}");
                    append_record(&*path, record).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let read = read_jsonl::<serde_json::Value>(&*path).unwrap();
    assert_eq!(read.values.len(), 1600);
    assert!(read.torn_tail.is_none());
    for t in 0..8 {
        let mine: Vec<u64> = read
            .values
            .iter()
            .filter(|v| v["t"] == t)
            .map(|v| v["i"].as_u64().unwrap())
            .collect();
        assert_eq!(
            mine,
            (0..200).collect::<Vec<_>>(),
            "thread {t} in order, none lost"
        );
    }
}

#[test]
fn append_after_foreign_torn_tail_is_detectable() {
    // Another program left a torn record; a later whole record makes that line corrupt, and
    // the reader names it rather than skipping it silently.
    let dir = Scratch::new("foreign");
    let path = dir.join("s.jsonl");
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(b"{\"n\":1}\n{\"n\"").unwrap();
    drop(f);
    append_record(&path, b"{\"n\":3}").unwrap();
    let err = read_jsonl::<serde_json::Value>(&path).unwrap_err();
    assert!(err.is_corrupt());
}

/// The torn tail of a file holding `bytes`, as `(offset, len)`.
fn tail_of(bytes: &[u8]) -> Option<(u64, u64)> {
    let dir = Scratch::new("find-tail");
    let path = dir.join("t.jsonl");
    std::fs::write(&path, bytes).unwrap();
    find_torn_tail(&path).unwrap().map(|t| (t.offset, t.len))
}

#[test]
fn find_torn_tail_finds_the_bytes_after_the_last_newline() {
    assert_eq!(tail_of(b""), None);
    assert_eq!(tail_of(b"{}\n"), None);
    assert_eq!(tail_of(b"{}\n{}\n"), None);
    assert_eq!(tail_of(b"{}\n{\"a\":"), Some((3, 5)));
    assert_eq!(tail_of(b"x"), Some((0, 1)));
    assert_eq!(tail_of(b"{\"a\":1}"), Some((0, 7)));
    // One torn byte: the newline is the byte before the last.
    assert_eq!(tail_of(b"{}\nx"), Some((3, 1)));
    const CHUNK: usize = 64 * 1024;
    for (before, torn) in [
        // The newline at the first byte of the last chunk, in a file shorter than a chunk, and
        // more than a chunk back.
        (CHUNK, CHUNK),
        (10, CHUNK - 1),
        (CHUNK + 3, 2 * CHUNK + 5),
    ] {
        let mut bytes = vec![b'a'; before - 1];
        bytes.push(b'\n');
        bytes.extend(std::iter::repeat_n(b'b', torn));
        assert_eq!(
            tail_of(&bytes),
            Some((before as u64, torn as u64)),
            "{before} {torn}"
        );
    }
    // No newline at all, across several chunks.
    let len = 3 * CHUNK + 1;
    assert_eq!(tail_of(&vec![b'c'; len]), Some((0, len as u64)));
    let dir = Scratch::new("find-tail-missing");
    assert!(
        find_torn_tail(dir.join("none.jsonl"))
            .unwrap_err()
            .is_not_found()
    );
}
