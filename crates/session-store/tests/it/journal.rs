//! The journal format: exact lines, headers, torn tails and corruption.

use std::path::Path;

use sessionkit_session_store::{
    Entry, Error, EvictReason, JournalHeader, JournalProblem, Op, Patch, Record, TornTail,
    WriterId, parse_journal, parse_records,
};

const W: WriterId = WriterId::new(0x9f1c_2a7b_e0d3_4c55);

fn path() -> &'static Path {
    Path::new("/r/sessions.json.journal")
}

fn sample() -> (Vec<Record>, String) {
    let entry = Entry::parse("{\n  \"sessionId\": \"s1\",\n  \"updatedAt\": 1,\n  \"ctx\": {\n    \"to\": \"a b\"\n  }\n}").unwrap();
    let records = vec![
        Record::upsert(12, W, "agent:x:main", &entry),
        Record::patch(
            13,
            W,
            "agent:x:main",
            Patch::parse(r#"{"label":"l\nm","updatedAt":2}"#).unwrap(),
        ),
        Record::delete(14, W, "cron:\"q\""),
        Record::evict(15, W, "hook:1", EvictReason::Disk),
    ];
    let mut text = JournalHeader::new(7).encode_line();
    for r in &records {
        r.encode_line(&mut text);
    }
    (records, text)
}

#[test]
fn records_are_written_exactly_as_documented() {
    let (_, text) = sample();
    assert_eq!(
        text,
        concat!(
            "{\"sessionkitJournal\":1,\"epoch\":7}\n",
            "{\"seq\":12,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"upsert\",\"key\":\"agent:x:main\",\"entry\":{\"sessionId\":\"s1\",\"updatedAt\":1,\"ctx\":{\"to\":\"a b\"}}}\n",
            "{\"seq\":13,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"patch\",\"key\":\"agent:x:main\",\"patch\":{\"label\":\"l\\nm\",\"updatedAt\":2}}\n",
            "{\"seq\":14,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"delete\",\"key\":\"cron:\\\"q\\\"\"}\n",
            "{\"seq\":15,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"evict\",\"key\":\"hook:1\",\"reason\":\"disk\"}\n",
        )
    );
}

#[test]
fn a_journal_reads_back_with_lines_and_offsets() {
    let (records, text) = sample();
    let parsed = parse_journal(path(), text.as_bytes()).unwrap();
    assert_eq!(parsed.header, Some(JournalHeader::new(7)));
    assert_eq!(parsed.valid_len, text.len() as u64);
    assert_eq!(parsed.torn_tail, None);
    let got: Vec<&Record> = parsed.records.iter().map(|r| &r.record).collect();
    assert_eq!(got, records.iter().collect::<Vec<_>>());
    let lines: Vec<usize> = parsed.records.iter().map(|r| r.line).collect();
    assert_eq!(lines, [2, 3, 4, 5]);
    let header_len = JournalHeader::new(7).encode_line().len() as u64;
    assert_eq!(parsed.records[0].offset, header_len);
    // Reading on from the second record gives the rest, with the file's offsets.
    let from = parsed.records[1].offset;
    let rest = parse_records(path(), &text.as_bytes()[from as usize..], from, 3).unwrap();
    assert_eq!(rest.records, parsed.records[1..].to_vec());
    assert_eq!(rest.valid_len, parsed.valid_len);
}

/// A journal saved by an editor with Windows line ends reads as the same records: the `\r` is
/// whitespace to JSON, and a line still ends at its `\n`.
#[test]
fn a_carriage_return_before_each_newline_changes_no_record() {
    let (records, text) = sample();
    let crlf = text.replace('\n', "\r\n");
    let parsed = parse_journal(path(), crlf.as_bytes()).unwrap();
    assert_eq!(parsed.header, Some(JournalHeader::new(7)));
    assert_eq!(parsed.valid_len, crlf.len() as u64);
    assert_eq!(parsed.torn_tail, None);
    let got: Vec<&Record> = parsed.records.iter().map(|r| &r.record).collect();
    assert_eq!(got, records.iter().collect::<Vec<_>>());
    let lines: Vec<usize> = parsed.records.iter().map(|r| r.line).collect();
    assert_eq!(lines, [2, 3, 4, 5]);
    // A `\r` alone ends no line: the last record without its `\n` is a torn tail.
    let cut = &crlf[..crlf.len() - 1];
    let parsed = parse_journal(path(), cut.as_bytes()).unwrap();
    assert_eq!(parsed.records.len(), 3);
    assert!(parsed.torn_tail.is_some());
}

#[test]
fn an_empty_file_is_a_fresh_journal() {
    let parsed = parse_journal(path(), b"").unwrap();
    assert_eq!(
        (
            parsed.header,
            parsed.records.len(),
            parsed.valid_len,
            parsed.torn_tail
        ),
        (None, 0, 0, None)
    );
}

#[test]
fn bytes_after_the_last_newline_are_torn_even_if_they_parse() {
    let (records, text) = sample();
    let full_record = records[0].encode();
    let with_tail = format!("{text}{full_record}");
    let parsed = parse_journal(path(), with_tail.as_bytes()).unwrap();
    assert_eq!(parsed.records.len(), 4);
    assert_eq!(parsed.valid_len, text.len() as u64);
    assert_eq!(
        parsed.torn_tail.map(|t: TornTail| (t.offset, t.len)),
        Some((text.len() as u64, full_record.len() as u64))
    );
    // A torn header alone is a fresh journal with a torn tail.
    let parsed = parse_journal(path(), b"{\"sessionkitJournal\":1,\"ep").unwrap();
    assert_eq!(parsed.header, None);
    assert_eq!(parsed.valid_len, 0);
    assert_eq!(parsed.torn_tail.map(|t| (t.offset, t.len)), Some((0, 26)));
}

fn corrupt(bytes: &[u8]) -> (usize, u64, JournalProblem) {
    match parse_journal(path(), bytes).unwrap_err() {
        Error::CorruptJournal {
            path: p,
            line,
            offset,
            problem,
            ..
        } => {
            assert_eq!(p, path());
            (line, offset, problem)
        }
        other => panic!("expected a corrupt journal, got {other:?}"),
    }
}

#[test]
fn a_bad_whole_line_is_corruption_naming_line_and_offset() {
    let (_, text) = sample();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let offset_of = |i: usize| lines[..i].iter().map(|l| l.len()).sum::<usize>() as u64;
    // Replace the third line (the patch) with each kind of bad record.
    let bad_lines = [
        ("not json\n", JournalProblem::BadRecord),
        ("\n", JournalProblem::BadRecord),
        ("{\"seq\":1}\n", JournalProblem::BadRecord),
        (
            "{\"seq\":-1,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"delete\",\"key\":\"k\"}\n",
            JournalProblem::BadRecord,
        ),
        (
            "{\"seq\":1,\"writer\":\"9F1C2A7BE0D34C55\",\"op\":\"delete\",\"key\":\"k\"}\n",
            JournalProblem::BadWriter,
        ),
        (
            "{\"seq\":1,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"rename\",\"key\":\"k\"}\n",
            JournalProblem::UnknownOp {
                op: "rename".into(),
            },
        ),
        (
            "{\"seq\":1,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"evict\",\"key\":\"k\",\"reason\":\"age\"}\n",
            JournalProblem::UnknownReason {
                reason: "age".into(),
            },
        ),
        (
            "{\"seq\":1,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"evict\",\"key\":\"k\"}\n",
            JournalProblem::BadRecord,
        ),
        (
            "{\"seq\":1,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"upsert\",\"key\":\"k\",\"entry\":[1]}\n",
            JournalProblem::EntryNotAnObject,
        ),
        (
            "{\"seq\":1,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"upsert\",\"key\":\"k\"}\n",
            JournalProblem::BadRecord,
        ),
        (
            "{\"seq\":1,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"patch\",\"key\":\"k\",\"patch\":\"x\"}\n",
            JournalProblem::PatchNotAnObject,
        ),
        (
            "{\"seq\":1,\"writer\":\"9f1c2a7be0d34c55\",\"op\":\"delete\",\"key\":\"k\"} x\n",
            JournalProblem::BadRecord,
        ),
    ];
    for (bad, problem) in bad_lines {
        let mut bytes = String::new();
        for (i, l) in lines.iter().enumerate() {
            bytes.push_str(if i == 2 { bad } else { l });
        }
        assert_eq!(
            corrupt(bytes.as_bytes()),
            (3, offset_of(2), problem),
            "{bad:?}"
        );
    }
}

#[test]
fn unknown_fields_are_ignored_for_forward_compatibility() {
    let text = "{\"sessionkitJournal\":1,\"epoch\":3,\"host\":\"gw\"}\n{\"seq\":1,\"writer\":\"0000000000000001\",\"op\":\"delete\",\"key\":\"k\",\"ts\":5}\n";
    let parsed = parse_journal(path(), text.as_bytes()).unwrap();
    assert_eq!(parsed.header, Some(JournalHeader::new(3)));
    assert_eq!(
        parsed.records[0].record,
        Record::delete(1, WriterId::new(1), "k")
    );
    assert!(matches!(parsed.records[0].record.op, Op::Delete));
}

#[test]
fn headers_are_checked() {
    assert_eq!(corrupt(b"{\"seq\":1}\n"), (1, 0, JournalProblem::BadHeader));
    assert_eq!(corrupt(b"\n"), (1, 0, JournalProblem::BadHeader));
    assert_eq!(
        corrupt(b"{\"sessionkitJournal\":1}\n"),
        (1, 0, JournalProblem::BadHeader)
    );
    assert_eq!(
        corrupt(b"garbage without newline"),
        (1, 0, JournalProblem::BadHeader)
    );
    let err = parse_journal(
        path(),
        b"{\"sessionkitJournal\":2,\"epoch\":1,\"new\":true}\n{}\n",
    )
    .unwrap_err();
    assert!(err.is_unsupported() && !err.is_corrupt(), "{err:?}");
    assert!(
        matches!(err, Error::UnsupportedJournal { version: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("version 2"), "{err}");
}

#[test]
fn errors_read_as_one_line_naming_the_file() {
    let err = parse_journal(path(), b"{\"sessionkitJournal\":1,\"epoch\":1}\nnope\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "`/r/sessions.json.journal` is corrupt: the line is not a valid record at line 2 (byte offset 34)"
    );
    assert!(std::error::Error::source(&err).is_some());
}
