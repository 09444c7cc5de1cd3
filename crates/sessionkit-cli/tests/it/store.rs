//! `sessionkit store`: every subcommand on real stores, their failures, and `check`'s problems.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::util::{DATA_ERR, IO_ERR, USAGE, assert_error, assert_error_line, names, run, run_in};

/// `store get` found no entry.
const NOT_FOUND: i32 = 1;

/// A journal header and a writer id for records written by hand.
const HEADER: &str = "{\"sessionkitJournal\":1,\"epoch\":1}\n";
const WRITER: &str = "00000000000000aa";

/// A temp directory with a store path `sessions.json` in it.
fn store_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.json");
    (dir, path)
}

/// The journal beside `path`.
fn journal(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// `sessionkit store <sub...> PATH <rest...>`.
fn args(sub: &[&str], path: &Path, rest: &[&str]) -> Vec<OsString> {
    let mut args = vec![OsString::from("store")];
    args.extend(sub.iter().map(OsString::from));
    args.push(path.as_os_str().to_owned());
    args.extend(rest.iter().map(OsString::from));
    args
}

/// Runs a store command and returns its standard output; it must succeed with nothing on
/// standard error.
fn ok(sub: &[&str], path: &Path, rest: &[&str], stdin: &[u8]) -> String {
    let output = run(args(sub, path, rest), stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{sub:?}: {stderr}");
    assert!(stderr.is_empty(), "{sub:?}: {stderr}");
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

/// `store get PATH KEY`'s standard output.
fn get(path: &Path, key: &str) -> String {
    ok(&["get"], path, &[key], b"")
}

/// `store set PATH KEY` with `entry` on standard input.
fn set(path: &Path, key: &str, entry: &str) {
    assert_eq!(ok(&["set"], path, &[key], entry.as_bytes()), "");
}

/// Parses a command's JSON output, which must be one pretty-printed object and a newline.
fn json(text: &str) -> Value {
    assert!(text.ends_with("}\n"), "{text}");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// An upsert record for a journal written by hand.
fn upsert(seq: u64, key: &str, entry: &str) -> String {
    format!(
        "{{\"seq\":{seq},\"writer\":\"{WRITER}\",\"op\":\"upsert\",\"key\":\"{key}\",\"entry\":{entry}}}\n"
    )
}

/// Every file in `dir` with its bytes (a directory by its name only), to show that a command
/// changed nothing.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    names(dir)
        .into_iter()
        .map(|name| {
            let file = dir.join(&name);
            if file.is_dir() {
                return (format!("{name}/"), Vec::new());
            }
            (name, fs::read(file).expect("read a file back"))
        })
        .collect()
}

/// Milliseconds since the Unix epoch now.
fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_millis()).expect("fits")
}

/// A failed store command: exit status `code`, one error line naming `path`; returns the line.
fn fails(output: &Output, code: i32, path: &Path) -> String {
    assert_error(output, code, path)
}

#[test]
fn set_then_get_gives_back_every_field_byte_for_byte() {
    let (_dir, path) = store_dir();
    let entry = r#"{"sessionId":"0b7e","updatedAt":1763708000000,"ratio":1.0,"big":1e3,"x-plugin":{"n":[1,2]},"name":"caf\u00e9"}"#;
    // echo adds a newline; it is not part of the entry.
    set(&path, "agent:main:main", &format!("{entry}\n"));
    assert_eq!(get(&path, "agent:main:main"), format!("{entry}\n"));
    // The store now exists on disk, as a journal only until the first compaction.
    assert!(journal(&path).is_file());
    assert!(!path.exists());
}

#[test]
fn set_replaces_the_whole_entry() {
    let (_dir, path) = store_dir();
    set(
        &path,
        "k",
        r#"{"sessionId":"a","updatedAt":5,"label":"old"}"#,
    );
    set(&path, "k", r#"{"sessionId":"b","updatedAt":6}"#);
    assert_eq!(get(&path, "k"), "{\"sessionId\":\"b\",\"updatedAt\":6}\n");
}

#[test]
fn a_missing_key_exits_1_with_a_line_naming_it() {
    let (_dir, path) = store_dir();
    set(&path, "k", r#"{"sessionId":"a","updatedAt":5}"#);
    let output = run(args(&["get"], &path, &["other"]), b"");
    let line = fails(&output, NOT_FOUND, &path);
    assert!(line.contains("no entry `other`"), "{line}");
}

#[test]
fn a_patch_merges_and_advances_updated_at() {
    let (_dir, path) = store_dir();
    set(
        &path,
        "k",
        r#"{"sessionId":"a","updatedAt":1000,"drop":true,"keep":1.0,"nested":{"a":1,"b":2}}"#,
    );
    let before = now_ms();
    let patch = r#"{"label":"x","drop":null,"nested":{"b":null,"c":3}}"#;
    assert_eq!(ok(&["set", "--patch"], &path, &["k"], patch.as_bytes()), "");
    let got = json(&ok(&["list", "--json"], &path, &[], b""));
    let entry = &got["entries"][0]["entry"];
    assert_eq!(entry["label"], "x");
    assert_eq!(entry.get("drop"), None);
    assert_eq!(entry["nested"], serde_json::json!({"a": 1, "c": 3}));
    let updated_at = entry["updatedAt"].as_i64().expect("updatedAt is a number");
    assert!(updated_at >= before, "{updated_at} < {before}");
    // Unpatched fields keep their bytes.
    let raw = get(&path, "k");
    assert!(raw.contains("\"keep\":1.0"), "{raw}");
}

#[test]
fn preserve_activity_keeps_updated_at() {
    let (_dir, path) = store_dir();
    set(&path, "k", r#"{"sessionId":"a","updatedAt":1000}"#);
    let patch = br#"{"label":"meta","updatedAt":99999}"#;
    let out = ok(
        &["set", "--patch", "--preserve-activity"],
        &path,
        &["k"],
        patch,
    );
    assert_eq!(out, "");
    let entry = json(&get(&path, "k"));
    assert_eq!(entry["updatedAt"], 1000);
    assert_eq!(entry["label"], "meta");
}

#[test]
fn a_patch_on_a_missing_key_creates_the_entry() {
    let (_dir, path) = store_dir();
    assert_eq!(
        ok(
            &["set", "--patch"],
            &path,
            &["new"],
            br#"{"sessionId":"n"}"#
        ),
        ""
    );
    let listed = ok(&["list"], &path, &[], b"");
    assert!(listed.starts_with("new  n  "), "{listed}");
}

#[test]
fn preserve_activity_without_patch_is_a_usage_error() {
    let (dir, path) = store_dir();
    let output = run(
        args(&["set", "--preserve-activity"], &path, &["k"]),
        br#"{"sessionId":"a"}"#,
    );
    assert_eq!(output.status.code(), Some(USAGE));
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

/// `store set --updated-at HOW PATH KEY` with `entry` on standard input; returns clock
/// readings taken just before and just after the command, which bracket the store's "now".
fn set_updated_at(path: &Path, key: &str, how: &str, entry: &str) -> (i64, i64) {
    let before = now_ms();
    let out = ok(
        &["set", "--updated-at", how],
        path,
        &[key],
        entry.as_bytes(),
    );
    let after = now_ms();
    assert_eq!(out, "");
    (before, after)
}

/// Asserts that the entry under `key` is `fields` followed by an `updatedAt` between `before`
/// and `after`, inclusive.
fn assert_stamped_now(path: &Path, key: &str, fields: &str, (before, after): (i64, i64)) {
    let raw = get(path, key);
    let at = json(&raw)["updatedAt"]
        .as_i64()
        .unwrap_or_else(|| panic!("no whole-number updatedAt: {raw}"));
    assert!(
        before <= at && at <= after,
        "{at} not in {before}..={after}: {raw}"
    );
    // The stamp goes last; every other field is written as it was given.
    assert_eq!(raw, format!("{fields}\"updatedAt\":{at}}}\n"));
}

#[test]
fn updated_at_advance_moves_a_past_value_up_to_now() {
    let (_dir, path) = store_dir();
    set(&path, "k", r#"{"sessionId":"a","updatedAt":1000}"#);
    let around = set_updated_at(
        &path,
        "k",
        "advance",
        r#"{"updatedAt":2000,"sessionId":"b","ratio":1.0}"#,
    );
    assert_stamped_now(&path, "k", r#"{"sessionId":"b","ratio":1.0,"#, around);
}

#[test]
fn updated_at_advance_cuts_a_future_value_back_to_now() {
    let (_dir, path) = store_dir();
    // A day ahead: a skewed machine's value, which must not stick.
    let future = now_ms() + 86_400_000;
    // In the existing entry.
    set(
        &path,
        "old",
        &format!(r#"{{"sessionId":"a","updatedAt":{future}}}"#),
    );
    let around = set_updated_at(
        &path,
        "old",
        "advance",
        r#"{"sessionId":"a","updatedAt":5}"#,
    );
    assert_stamped_now(&path, "old", r#"{"sessionId":"a","#, around);
    // In the input, for a new key.
    let input = format!(r#"{{"sessionId":"n","updatedAt":{future}}}"#);
    let around = set_updated_at(&path, "new", "advance", &input);
    assert_stamped_now(&path, "new", r#"{"sessionId":"n","#, around);
}

#[test]
fn updated_at_preserve_keeps_the_existing_value_whatever_the_input_says() {
    let (_dir, path) = store_dir();
    // The input's own value is replaced by the existing entry's.
    set(&path, "k", r#"{"sessionId":"a","updatedAt":1000}"#);
    let input = r#"{"updatedAt":99999,"sessionId":"b","label":"meta"}"#;
    set_updated_at(&path, "k", "preserve", input);
    assert_eq!(
        get(&path, "k"),
        "{\"sessionId\":\"b\",\"label\":\"meta\",\"updatedAt\":1000}\n"
    );
    // An input without one gets the existing entry's.
    set_updated_at(&path, "k", "preserve", r#"{"sessionId":"c"}"#);
    assert_eq!(
        get(&path, "k"),
        "{\"sessionId\":\"c\",\"updatedAt\":1000}\n"
    );
    // A future value is kept too: only advance caps at now.
    let future = now_ms() + 86_400_000;
    set(
        &path,
        "f",
        &format!(r#"{{"sessionId":"f","updatedAt":{future}}}"#),
    );
    set_updated_at(&path, "f", "preserve", r#"{"sessionId":"f","updatedAt":7}"#);
    assert_eq!(
        get(&path, "f"),
        format!("{{\"sessionId\":\"f\",\"updatedAt\":{future}}}\n")
    );
}

#[test]
fn updated_at_preserve_with_nothing_to_keep_stamps_now() {
    let (_dir, path) = store_dir();
    // A new key: there is no existing value, so the entry gets now, not the input's value.
    let around = set_updated_at(
        &path,
        "new",
        "preserve",
        r#"{"sessionId":"n","updatedAt":5}"#,
    );
    assert_stamped_now(&path, "new", r#"{"sessionId":"n","#, around);
    // An existing entry whose updatedAt is not a whole number has nothing to keep either.
    set(&path, "odd", r#"{"sessionId":"o","updatedAt":"yesterday"}"#);
    let around = set_updated_at(
        &path,
        "odd",
        "preserve",
        r#"{"sessionId":"o","updatedAt":5}"#,
    );
    assert_stamped_now(&path, "odd", r#"{"sessionId":"o","#, around);
}

#[test]
fn updated_at_as_given_is_the_default_and_writes_the_input_unchanged() {
    let (_dir, path) = store_dir();
    let future = now_ms() + 86_400_000;
    let inputs = [
        r#"{"updatedAt":5,"sessionId":"p","ratio":1.0}"#.to_owned(),
        format!(r#"{{"updatedAt":{future},"sessionId":"f"}}"#),
        r#"{"sessionId":"none"}"#.to_owned(),
    ];
    let options: [&[&str]; 2] = [&["set"], &["set", "--updated-at", "as-given"]];
    for option in options {
        for input in &inputs {
            // An existing entry with a value of its own, which must not leak into the new one.
            set(&path, "k", r#"{"sessionId":"a","updatedAt":1000}"#);
            assert_eq!(ok(option, &path, &["k"], input.as_bytes()), "");
            assert_eq!(get(&path, "k"), format!("{input}\n"), "{option:?}");
        }
    }
}

#[test]
fn updated_at_refuses_bad_values_and_patch_as_usage_errors() {
    let (dir, path) = store_dir();
    let output = run(
        args(&["set", "--updated-at", "later"], &path, &["k"]),
        br#"{"sessionId":"a"}"#,
    );
    assert_eq!(output.status.code(), Some(USAGE));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("'later'"), "{stderr}");
    assert!(stderr.contains("as-given, advance, preserve"), "{stderr}");
    // A patch always stamps; --preserve-activity is its way to keep the value.
    for how in ["as-given", "advance", "preserve"] {
        let output = run(
            args(&["set", "--patch", "--updated-at", how], &path, &["k"]),
            br#"{"sessionId":"a"}"#,
        );
        assert_eq!(output.status.code(), Some(USAGE), "{how}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("cannot be used with"), "{how}: {stderr}");
    }
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn bad_input_exits_65_naming_standard_input_and_changes_nothing() {
    let (dir, path) = store_dir();
    set(&path, "k", r#"{"sessionId":"a","updatedAt":5}"#);
    let before = contents(dir.path());
    let cases: [(&[&str], &[u8], &str); 7] = [
        (&["set"], b"{\"sessionId\":", "not valid JSON"),
        (&["set"], b"", "not valid JSON"),
        (&["set"], b"[1,2]", "not a JSON object"),
        (&["set"], b"{} {}", "not valid JSON"),
        (&["set"], b"{\"a\":\"\xff\"}", "invalid utf-8"),
        (&["set", "--patch"], b"null", "not a JSON object"),
        (&["set", "--patch"], b"{oops}", "not valid JSON"),
    ];
    for (sub, input, why) in cases {
        let output = run(args(sub, &path, &["k"]), input);
        let line = fails(&output, DATA_ERR, &path);
        assert!(line.contains("from standard input"), "{line}");
        assert!(line.contains(why), "{why}: {line}");
        assert_eq!(contents(dir.path()), before, "{input:?} changed the store");
    }
    // Nor is a missing store created for bad input.
    let fresh = dir.path().join("fresh.json");
    let output = run(args(&["set"], &fresh, &["k"]), b"nope");
    fails(&output, DATA_ERR, &fresh);
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn set_in_a_missing_directory_exits_74() {
    let (dir, _) = store_dir();
    let path = dir.path().join("no/such/dir/sessions.json");
    let output = run(args(&["set"], &path, &["k"]), b"{}");
    fails(&output, IO_ERR, &path);
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn commands_other_than_set_refuse_a_missing_store_and_create_nothing() {
    let (dir, path) = store_dir();
    let cases: [(&[&str], &[&str]); 7] = [
        (&["stats"], &[]),
        (&["stats", "--json"], &[]),
        (&["get"], &["k"]),
        (&["list"], &[]),
        (&["delete"], &["k"]),
        (&["compact"], &[]),
        (&["check"], &[]),
    ];
    for (sub, rest) in cases {
        let output = run(args(sub, &path, rest), b"");
        let line = fails(&output, IO_ERR, &path);
        let op = if matches!(sub[0], "delete" | "compact") {
            "open"
        } else {
            "read"
        };
        assert!(
            line.starts_with(&format!(
                "sessionkit: error: failed to {op} the store `{}`: there is no store there",
                path.display()
            )),
            "{sub:?}: {line}"
        );
        assert!(line.contains("neither it nor"), "{sub:?}: {line}");
        assert!(line.contains("sessions.json.journal"), "{sub:?}: {line}");
        assert_eq!(names(dir.path()), Vec::<String>::new(), "{sub:?}");
    }
}

#[test]
fn list_orders_filters_and_limits() {
    let (_dir, path) = store_dir();
    set(&path, "cron:b", r#"{"sessionId":"s2","updatedAt":2000}"#);
    set(&path, "agent:a", r#"{"sessionId":"s1","updatedAt":3000}"#);
    set(&path, "cron:a", r#"{"sessionId":"s3","updatedAt":1000}"#);
    set(&path, "hook:x", r#"{"label":"no id, no time"}"#);
    let keys = |extra: &[&str]| -> Vec<String> {
        let mut sub = vec!["list"];
        sub.extend_from_slice(extra);
        ok(&sub, &path, &[], b"")
            .lines()
            .map(|line| line.split_whitespace().next().expect("a key").to_owned())
            .collect()
    };
    assert_eq!(keys(&[]), ["agent:a", "cron:a", "cron:b", "hook:x"]);
    assert_eq!(
        keys(&["--newest"]),
        ["agent:a", "cron:b", "cron:a", "hook:x"]
    );
    assert_eq!(
        keys(&["--oldest"]),
        ["hook:x", "cron:a", "cron:b", "agent:a"]
    );
    assert_eq!(keys(&["--prefix", "cron:"]), ["cron:a", "cron:b"]);
    assert_eq!(
        keys(&["--prefix", "cron:", "--newest"]),
        ["cron:b", "cron:a"]
    );
    assert_eq!(keys(&["--oldest", "--limit", "2"]), ["hook:x", "cron:a"]);
    assert_eq!(keys(&["--limit", "0"]), Vec::<String>::new());
    assert_eq!(keys(&["--prefix", "zzz"]), Vec::<String>::new());

    // Columns: key, sessionId, updatedAt as an ISO time; a dash where there is none.
    assert_eq!(
        ok(&["list", "--prefix", "cron:a"], &path, &[], b""),
        "cron:a  s3  1970-01-01T00:00:01.000Z\n"
    );
    assert_eq!(
        ok(&["list", "--prefix", "hook"], &path, &[], b""),
        "hook:x  -  -\n"
    );
}

#[test]
fn list_json_holds_each_entry_with_its_bytes() {
    let (_dir, path) = store_dir();
    set(
        &path,
        "k",
        r#"{"sessionId":"s","updatedAt":1763708000000,"f":1.0}"#,
    );
    set(&path, "n", r#"{"label":"x"}"#);
    let text = ok(&["list", "--json", "--newest"], &path, &[], b"");
    // The entry is written with the bytes the store holds, so `1.0` stays `1.0`.
    assert!(
        text.contains(r#""entry": {"sessionId":"s","updatedAt":1763708000000,"f":1.0}"#),
        "{text}"
    );
    let listing = json(&text);
    let entries = listing["entries"].as_array().expect("an array");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["key"], "k");
    assert_eq!(entries[0]["sessionId"], "s");
    assert_eq!(entries[0]["updatedAt"], 1_763_708_000_000_i64);
    assert_eq!(entries[1]["key"], "n");
    assert_eq!(entries[1]["sessionId"], Value::Null);
    assert_eq!(entries[1]["updatedAt"], Value::Null);
    assert_eq!(entries[1]["entry"], serde_json::json!({"label": "x"}));
}

#[test]
fn newest_and_oldest_together_are_a_usage_error() {
    let (_dir, path) = store_dir();
    set(&path, "k", "{}");
    let output = run(args(&["list", "--newest", "--oldest"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(USAGE));
    let output = run(args(&["list", "--limit", "-1"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(USAGE));
}

#[test]
fn stats_counts_entries_sessions_and_bytes() {
    let (_dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1","updatedAt":1}"#);
    set(&path, "b", r#"{"sessionId":"s1","updatedAt":2}"#);
    set(&path, "c", r#"{"sessionId":"s2","updatedAt":3}"#);
    let journal_len = fs::metadata(journal(&path)).expect("journal").len();
    let human = ok(&["stats"], &path, &[], b"");
    let field = |name: &str| -> u64 {
        let prefix = format!("{name}: ");
        human
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `{name}` in:\n{human}"))
            .parse()
            .expect("a number")
    };
    assert_eq!(field("entries"), 3);
    assert_eq!(field("sessions"), 2);
    assert!(field("bytes") > 0);
    assert_eq!(field("snapshot bytes"), 0);
    assert_eq!(field("journal bytes"), journal_len);
    assert_eq!(field("journal records"), 3);
    assert_eq!(human.lines().count(), 6, "{human}");

    let stats = json(&ok(&["stats", "--json"], &path, &[], b""));
    assert_eq!(stats["entries"], 3);
    assert_eq!(stats["sessions"], 2);
    assert_eq!(stats["bytes"], field("bytes"));
    assert_eq!(stats["journalBytes"], journal_len);
    assert_eq!(stats["snapshotBytes"], 0);

    // After a compaction the entries live in the snapshot.
    ok(&["compact"], &path, &[], b"");
    let stats = json(&ok(&["stats", "--json"], &path, &[], b""));
    assert_eq!(stats["entries"], 3);
    assert_eq!(stats["journalRecords"], 0);
    assert_eq!(
        stats["snapshotBytes"],
        fs::metadata(&path).expect("snapshot").len()
    );
}

#[test]
fn delete_removes_the_entry_and_a_missing_key_is_fine() {
    let (_dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1"}"#);
    set(&path, "b", r#"{"sessionId":"s2"}"#);
    assert_eq!(ok(&["delete"], &path, &["a"], b""), "");
    let output = run(args(&["get"], &path, &["a"]), b"");
    fails(&output, NOT_FOUND, &path);
    let journal_len = fs::metadata(journal(&path)).expect("journal").len();
    // Deleting what is not there succeeds and writes nothing.
    assert_eq!(ok(&["delete"], &path, &["a"], b""), "");
    assert_eq!(
        fs::metadata(journal(&path)).expect("journal").len(),
        journal_len
    );
    assert!(ok(&["list"], &path, &[], b"").starts_with("b  s2"));
}

#[test]
fn compact_writes_an_openclaw_snapshot_and_reports_it() {
    let (_dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1","updatedAt":1,"f":1.0}"#);
    set(&path, "b", r#"{"sessionId":"s2","updatedAt":2}"#);
    ok(&["delete"], &path, &["b"], b"");
    let before = fs::metadata(journal(&path)).expect("journal").len();
    let human = ok(&["compact"], &path, &[], b"");
    assert!(human.starts_with("entries: 1\nsnapshot bytes: "), "{human}");
    assert!(
        human.contains(&format!("journal bytes: {before} before, ")),
        "{human}"
    );
    assert!(human.contains("journal locked for: "), "{human}");
    let snapshot = fs::read_to_string(&path).expect("the snapshot");
    assert_eq!(
        snapshot,
        "{\n  \"a\": {\n    \"sessionId\": \"s1\",\n    \"updatedAt\": 1,\n    \"f\": 1.0\n  }\n}\n"
    );
    let after = fs::metadata(journal(&path)).expect("journal").len();
    assert!(after < before, "{after} >= {before}");

    let report = json(&ok(&["compact", "--json"], &path, &[], b""));
    assert_eq!(report["entries"], 1);
    assert_eq!(report["snapshotBytes"], snapshot.len());
    assert_eq!(report["journalBytesBefore"], after);
    assert_eq!(report["superseded"], false);
    // Nothing was lost.
    assert_eq!(
        get(&path, "a"),
        "{\"sessionId\":\"s1\",\"updatedAt\":1,\"f\":1.0}\n"
    );
}

#[test]
fn an_openclaw_snapshot_is_read_without_creating_a_journal() {
    let (dir, path) = store_dir();
    fs::write(
        &path,
        "{\n  \"agent:main:main\": {\n    \"sessionId\": \"0b7e\",\n    \"updatedAt\": 1763708000000\n  }\n}\n",
    )
    .expect("plant a snapshot");
    let before = contents(dir.path());
    assert_eq!(
        get(&path, "agent:main:main"),
        "{\"sessionId\":\"0b7e\",\"updatedAt\":1763708000000}\n"
    );
    assert!(
        ok(&["list"], &path, &[], b"")
            .starts_with("agent:main:main  0b7e  2025-11-21T06:53:20.000Z")
    );
    assert!(ok(&["stats"], &path, &[], b"").starts_with("entries: 1\n"));
    assert_eq!(contents(dir.path()), before);
    // A write starts the journal beside it.
    set(&path, "cron:1", r#"{"sessionId":"c1"}"#);
    assert!(journal(&path).is_file());
    assert_eq!(
        get(&path, "agent:main:main"),
        "{\"sessionId\":\"0b7e\",\"updatedAt\":1763708000000}\n"
    );
}

#[test]
fn a_corrupt_snapshot_fails_every_command_with_65_and_is_left_alone() {
    let (dir, path) = store_dir();
    fs::write(&path, "{\"a\": {\"sessionId\": \"s\"},\n  oops\n")
        .expect("plant a corrupt snapshot");
    for with_journal in [false, true] {
        if with_journal {
            fs::write(journal(&path), HEADER).expect("plant a journal");
        }
        let before = contents(dir.path());
        let cases: [(&[&str], &[&str], &[u8]); 6] = [
            (&["stats"], &[], b""),
            (&["get"], &["a"], b""),
            (&["list", "--json"], &[], b""),
            (&["set"], &["b"], b"{}"),
            (&["delete"], &["a"], b""),
            (&["compact"], &[], b""),
        ];
        for (sub, rest, stdin) in cases {
            let output = run(args(sub, &path, rest), stdin);
            let line = fails(&output, DATA_ERR, &path);
            assert!(line.contains("is corrupt"), "{sub:?}: {line}");
            assert!(line.contains("line 2"), "{sub:?}: {line}");
            // Not repaired, not quarantined, no journal created beside it.
            assert_eq!(contents(dir.path()), before, "{sub:?} changed the files");
        }
    }
}

#[test]
fn a_corrupt_journal_record_fails_commands_with_65_naming_its_line() {
    let (dir, path) = store_dir();
    let good = upsert(1, "a", r#"{"sessionId":"s"}"#);
    fs::write(
        journal(&path),
        format!("{HEADER}{good}{{\"seq\":2,\"op\":\"upsert\"}}\n"),
    )
    .expect("plant a journal");
    let before = contents(dir.path());
    let offset = HEADER.len() + good.len();
    for (sub, rest, stdin) in [
        (&["get"][..], &["a"][..], &b""[..]),
        (&["stats"], &[], b""),
        (&["set"], &["b"], b"{}"),
        (&["compact"], &[], b""),
    ] {
        let output = run(args(sub, &path, rest), stdin);
        let line = assert_error_line(&output, DATA_ERR);
        assert!(line.contains("sessions.json.journal` is corrupt"), "{line}");
        assert!(
            line.contains(&format!("at line 3 (byte offset {offset})")),
            "{line}"
        );
        assert_eq!(contents(dir.path()), before, "{sub:?} changed the files");
    }
}

#[test]
fn a_journal_of_a_newer_version_is_refused_and_left_alone() {
    let (dir, path) = store_dir();
    fs::write(journal(&path), "{\"sessionkitJournal\":2,\"epoch\":1}\n").expect("plant");
    let before = contents(dir.path());
    for (sub, stdin) in [(&["get"][..], &b""[..]), (&["set"], b"{}")] {
        let output = run(args(sub, &path, &["k"]), stdin);
        let line = assert_error_line(&output, DATA_ERR);
        assert!(line.contains("has format version 2"), "{line}");
    }
    let text = run(args(&["check", "--json"], &path, &[]), b"");
    assert_eq!(text.status.code(), Some(DATA_ERR));
    let report = json(&String::from_utf8(text.stdout).expect("UTF-8"));
    assert_eq!(report["problems"][0]["kind"], "journal-unsupported");
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn check_passes_a_clean_store_with_its_transcripts() {
    let (dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1","updatedAt":1}"#);
    set(&path, "b", r#"{"sessionId":"s1","updatedAt":2}"#);
    set(
        &path,
        "topic",
        r#"{"sessionId":"s2","sessionFile":"t/s2-topic-7.jsonl"}"#,
    );
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let absolute = elsewhere.path().join("x.jsonl");
    set(
        &path,
        "abs",
        &serde_json::json!({"sessionId": "s3", "sessionFile": absolute}).to_string(),
    );
    set(&path, "bare", r#"{"label":"no transcript"}"#);
    fs::write(dir.path().join("s1.jsonl"), "").expect("transcript");
    fs::create_dir(dir.path().join("t")).expect("topic dir");
    fs::write(dir.path().join("t/s2-topic-7.jsonl"), "").expect("transcript");
    fs::write(&absolute, "").expect("transcript");
    ok(&["compact"], &path, &[], b"");
    set(&path, "c", r#"{"sessionId":"s1","updatedAt":3}"#);

    let before = contents(dir.path());
    let human = ok(&["check"], &path, &[], b"");
    assert_eq!(
        human,
        format!(
            "checked `{}`: 6 entries, 1 journal record, 3 transcripts: no problems\n",
            path.display()
        )
    );
    let report = json(&ok(&["check", "--json"], &path, &[], b""));
    assert_eq!(report["ok"], true);
    assert_eq!(report["entries"], 6);
    assert_eq!(report["transcripts"], 3);
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(contents(dir.path()), before);
}

/// Appends a whole record of writer `aa` for `key` to the journal at `path`'s store, as a
/// failed batch its writer could not cut, and fences it off; returns where it starts and its
/// length.
fn plant_fenced_batch(path: &Path, key: &str) -> (u64, u64) {
    let text = fs::read_to_string(journal(path)).expect("journal");
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("header")).expect("header JSON");
    let offset = text.len() as u64;
    let record = format!(
        "{{\"seq\":7,\"writer\":\"00000000000000aa\",\"op\":\"upsert\",\"key\":\"{key}\",\"entry\":{{\"sessionId\":\"s1\"}}}}\n"
    );
    fs::write(journal(path), format!("{text}{record}")).expect("append the batch");
    fs::write(
        fence(path),
        format!(
            "{{\"sessionkitFence\":1,\"epoch\":{},\"offset\":{offset},\"writer\":\"00000000000000aa\",\"seq\":7}}\n",
            header["epoch"]
        ),
    )
    .expect("fence");
    (offset, record.len() as u64)
}

fn fence(path: &Path) -> PathBuf {
    let mut name = journal(path).into_os_string();
    name.push(".fence");
    PathBuf::from(name)
}

#[test]
fn check_reports_a_fenced_batch_readers_skip_it_and_a_write_cuts_it() {
    let (dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1"}"#);
    fs::write(dir.path().join("s1.jsonl"), "").expect("transcript");
    let (offset, len) = plant_fenced_batch(&path, "failed");
    let before = contents(dir.path());

    let output = run(args(&["check"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(DATA_ERR));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("journal-fenced-batch: "), "{text}");
    assert!(
        lines[0].contains(&format!(
            "failed batch of {len} bytes at line 3 (byte offset {offset})"
        )),
        "{text}"
    );
    let report = json(
        &String::from_utf8(run(args(&["check", "--json"], &path, &[]), b"").stdout).expect("UTF-8"),
    );
    assert_eq!(report["problems"][0]["kind"], "journal-fenced-batch");
    assert_eq!(report["entries"], 1);

    // Readers skip the fenced batch and leave it.
    assert_eq!(
        run(args(&["get"], &path, &["failed"]), b"").status.code(),
        Some(1)
    );
    assert_eq!(contents(dir.path()), before);

    // A write opens the store, which cuts the batch, and says so.
    let output = run(args(&["set"], &path, &["b"]), br#"{"sessionId":"s1"}"#);
    assert_eq!(output.status.code(), Some(0));
    let warning = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(
        warning.starts_with(&format!(
            "sessionkit: warning: cut a failed batch of {len} bytes from "
        )) && warning.lines().count() == 1,
        "{warning}"
    );
    assert!(!fence(&path).exists());
    ok(&["check"], &path, &[], b"");
    assert_eq!(
        run(args(&["get"], &path, &["failed"]), b"").status.code(),
        Some(1)
    );
}

#[test]
fn check_reports_a_corrupt_fence_and_a_write_refuses_it() {
    let (dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1"}"#);
    fs::write(dir.path().join("s1.jsonl"), "").expect("transcript");
    fs::write(fence(&path), "{\"sessionkitFence\":1,").expect("fence");

    let report = json(
        &String::from_utf8(run(args(&["check", "--json"], &path, &[]), b"").stdout).expect("UTF-8"),
    );
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["kind"], "fence-corrupt");
    assert_eq!(
        report["problems"][0]["file"],
        fence(&path).to_str().unwrap()
    );
    let output = run(args(&["set"], &path, &["b"]), br#"{"sessionId":"s1"}"#);
    assert_eq!(output.status.code(), Some(DATA_ERR));
    assert!(fence(&path).exists());
}

#[test]
fn check_reports_a_torn_tail_and_changes_nothing_until_a_write_cuts_it() {
    let (dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1"}"#);
    fs::write(dir.path().join("s1.jsonl"), "").expect("transcript");
    let whole = fs::metadata(journal(&path)).expect("journal").len();
    let torn = "{\"seq\":2,\"writer\":\"00000000000000aa\",\"op\":\"ups";
    let mut bytes = fs::read(journal(&path)).expect("journal");
    bytes.extend_from_slice(torn.as_bytes());
    fs::write(journal(&path), &bytes).expect("tear the journal");
    let before = contents(dir.path());

    let output = run(args(&["check"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(DATA_ERR));
    assert!(output.stderr.is_empty());
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("journal-torn-tail: "), "{text}");
    assert!(
        lines[0].contains(&format!(
            "torn tail of {} bytes at line 3 (byte offset {whole})",
            torn.len()
        )),
        "{text}"
    );
    assert!(lines[1].ends_with(": 1 problem"), "{text}");

    let report = json(
        &String::from_utf8(run(args(&["check", "--json"], &path, &[]), b"").stdout).expect("UTF-8"),
    );
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["kind"], "journal-torn-tail");
    assert_eq!(report["problems"][0]["offset"], whole);

    // Readers skip the torn bytes and leave them.
    assert_eq!(get(&path, "a"), "{\"sessionId\":\"s1\"}\n");
    assert_eq!(contents(dir.path()), before);

    // A write opens the store, which cuts the tail, and says so.
    let output = run(args(&["set"], &path, &["b"]), br#"{"sessionId":"s1"}"#);
    assert_eq!(output.status.code(), Some(0));
    let warning = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(
        warning.starts_with("sessionkit: warning: cut a torn tail of ")
            && warning.ends_with("never acknowledged\n")
            && warning.lines().count() == 1,
        "{warning}"
    );
    assert!(
        warning.contains(&format!("{} bytes", torn.len())),
        "{warning}"
    );
    ok(&["check"], &path, &[], b"");
}

#[test]
fn check_reports_every_corrupt_record_with_its_line_and_offset() {
    let (dir, path) = store_dir();
    let first = upsert(1, "a", r#"{"sessionId":"s1"}"#);
    let bad1 = "{\"seq\":2,\"writer\":\"XYZ\",\"op\":\"delete\",\"key\":\"a\"}\n";
    let middle = upsert(3, "b", r#"{"sessionId":"s2"}"#);
    let bad2 = "garbage\n";
    let text = format!("{HEADER}{first}{bad1}{middle}{bad2}");
    fs::write(journal(&path), &text).expect("plant a journal");
    for id in ["s1", "s2"] {
        fs::write(dir.path().join(format!("{id}.jsonl")), "").expect("transcript");
    }
    let before = contents(dir.path());

    let output = run(args(&["check"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(DATA_ERR));
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let offset1 = HEADER.len() + first.len();
    let offset2 = offset1 + bad1.len() + middle.len();
    assert!(lines[0].starts_with("journal-corrupt: "), "{out}");
    assert!(
        lines[0].contains(&format!("at line 3 (byte offset {offset1})")),
        "{out}"
    );
    assert!(lines[0].contains("writer"), "{out}");
    assert!(
        lines[1].contains(&format!("at line 5 (byte offset {offset2})")),
        "{out}"
    );
    // Both valid records still count; the bad one between them does not stop the check.
    assert!(lines[2].contains("2 entries, 2 journal records"), "{out}");
    assert!(lines[2].ends_with(": 2 problems"), "{out}");

    let report = json(
        &String::from_utf8(run(args(&["check", "--json"], &path, &[]), b"").stdout).expect("UTF-8"),
    );
    let problems = report["problems"].as_array().expect("an array");
    assert_eq!(problems.len(), 2);
    assert_eq!(problems[0]["kind"], "journal-corrupt");
    assert_eq!(problems[0]["line"], 3);
    assert_eq!(problems[0]["offset"], offset1);
    assert_eq!(problems[1]["line"], 5);
    assert_eq!(problems[1]["offset"], offset2);
    assert_eq!(contents(dir.path()), before);
}

/// Records whose `seq` is not above an earlier one of their writer are skipped by every
/// reader. sessionkit never writes one, so in one journal each is damage: `check` names each,
/// telling a byte-for-byte repeat (nothing lost) from a record whose change is lost, and
/// `doctor --fix` leaves the registry alone rather than compact the record away.
#[test]
fn check_and_doctor_report_records_every_reader_skips() {
    let (dir, path) = store_dir();
    let lines = [
        upsert(1, "a", r#"{"sessionId":"s1"}"#),
        // Seq 2 is unused, as after a failed batch.
        upsert(3, "b", r#"{"sessionId":"s2"}"#),
        upsert(1, "a", r#"{"sessionId":"s1"}"#),
        upsert(3, "c", r#"{"sessionId":"s3"}"#),
        upsert(2, "d", r#"{"sessionId":"s4"}"#),
        upsert(4, "e", r#"{"sessionId":"s5"}"#),
    ];
    let text = format!("{HEADER}{}", lines.concat());
    fs::write(journal(&path), &text).expect("plant a journal");
    for id in ["s1", "s2", "s5"] {
        fs::write(dir.path().join(format!("{id}.jsonl")), "").expect("transcript");
    }
    // The byte offset of the record on (1-based) line `line`.
    let offset = |line: usize| HEADER.len() + lines[..line - 2].concat().len();
    let before = contents(dir.path());

    let output = run(args(&["check"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(DATA_ERR));
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    let shown = journal(&path).display().to_string();
    let at = |line: usize| {
        format!(
            "journal-skipped-record: `{shown}` line {line} (byte offset {})",
            offset(line)
        )
    };
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 4, "{out}");
    assert!(
        got[0].starts_with(&format!(
            "{} repeats line 2 (writer {WRITER}, seq 1): every reader skips the repeat, so \
             nothing is lost",
            at(4)
        )),
        "{out}"
    );
    assert!(
        got[1].starts_with(&format!(
            "{}: writer {WRITER}'s seq 3 is not above the seq 3 it reached earlier in the \
             journal, and line 3 holds another record with seq 3, so every reader skips this \
             record as already applied and its change is lost",
            at(5)
        )),
        "{out}"
    );
    assert!(
        got[2].starts_with(&format!(
            "{}: writer {WRITER}'s seq 2 is not above the seq 3 it reached earlier in the \
             journal, so every reader skips",
            at(6)
        )),
        "{out}"
    );
    assert!(
        got[3].ends_with("3 entries, 3 journal records, 3 transcripts: 3 problems"),
        "{out}"
    );
    // The library reads the store the same way: the skipped records' keys are not there.
    assert_eq!(
        run(args(&["get"], &path, &["c"]), b"").status.code(),
        Some(NOT_FOUND)
    );

    let report = json(
        &String::from_utf8(run(args(&["check", "--json"], &path, &[]), b"").stdout).expect("UTF-8"),
    );
    let problems = report["problems"].as_array().expect("an array");
    let kinds: Vec<(&str, u64, u64)> = problems
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().expect("a kind"),
                p["line"].as_u64().expect("a line"),
                p["offset"].as_u64().expect("an offset"),
            )
        })
        .collect();
    let want = |line: usize| ("journal-skipped-record", line as u64, offset(line) as u64);
    assert_eq!(kinds, [want(4), want(5), want(6)]);

    let mut doctor = vec![OsString::from("doctor"), OsString::from("--fix")];
    doctor.push(dir.path().as_os_str().to_owned());
    let output = run(doctor, b"");
    assert_eq!(output.status.code(), Some(DATA_ERR));
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(
        out.matches("journal-skipped-record (left)").count(),
        3,
        "{out}"
    );
    // Nor does it offer to compact the journal, which would drop them for good.
    assert!(!out.contains("compacts it"), "{out}");
    assert_eq!(contents(dir.path()), before);
}

/// A transcript that cannot be read is reported with the operating system's reason, not
/// only the step that failed. Run as another user, for whom a mode of 600 denies the read.
#[test]
fn check_says_why_a_transcript_cannot_be_read() {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(why) = sessionkit_test_support::why_not_as_nobody() {
        println!("SKIP: a transcript another user cannot read: {why}");
        return;
    }
    let (dir, path) = store_dir();
    set(&path, "k", r#"{"sessionId":"s1"}"#);
    let transcript = dir.path().join("s1.jsonl");
    fs::write(&transcript, "{}\n").expect("transcript");
    let mode = |path: &Path, mode| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("set a mode")
    };
    mode(dir.path(), 0o755);
    for file in names(dir.path()) {
        mode(&dir.path().join(file), 0o644);
    }
    mode(&transcript, 0o600);
    let before = contents(dir.path());

    let output = crate::util::run_as_nobody(dir.path(), args(&["check"], &path, &[]));
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(DATA_ERR),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = out
        .lines()
        .find(|line| line.starts_with("transcript-error: entry `k`: "))
        .unwrap_or_else(|| panic!("no transcript-error line in:\n{out}"));
    assert!(line.contains(&transcript.display().to_string()), "{line}");
    assert!(line.contains("cannot be read: "), "{line}");
    assert!(line.contains("Permission denied"), "{line}");
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn check_reports_missing_transcripts_by_entry() {
    let (dir, path) = store_dir();
    set(&path, "has", r#"{"sessionId":"s1"}"#);
    set(&path, "lost", r#"{"sessionId":"s2"}"#);
    set(
        &path,
        "lost-topic",
        r#"{"sessionId":"s3","sessionFile":"s3-topic-1.jsonl"}"#,
    );
    set(&path, "dir", r#"{"sessionId":"d"}"#);
    fs::write(dir.path().join("s1.jsonl"), "").expect("transcript");
    // The default transcript of the topic exists, but its sessionFile names another.
    fs::write(dir.path().join("s3.jsonl"), "").expect("transcript");
    fs::create_dir(dir.path().join("d.jsonl")).expect("a directory");

    let output = run(args(&["check"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(DATA_ERR));
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    let missing = |key: &str, file: &str| {
        format!(
            "transcript-missing: entry `{key}`: transcript `{}` does not exist",
            dir.path().join(file).display()
        )
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..3],
        [
            format!(
                "transcript-error: entry `dir`: transcript `{}` is not a regular file",
                dir.path().join("d.jsonl").display()
            ),
            missing("lost", "s2.jsonl"),
            missing("lost-topic", "s3-topic-1.jsonl"),
        ],
        "{out}"
    );
    assert!(
        lines[3].ends_with("4 entries, 4 journal records, 4 transcripts: 3 problems"),
        "{out}"
    );

    let report = json(
        &String::from_utf8(run(args(&["check", "--json"], &path, &[]), b"").stdout).expect("UTF-8"),
    );
    let problem = &report["problems"][1];
    assert_eq!(problem["kind"], "transcript-missing");
    assert_eq!(problem["key"], "lost");
    assert_eq!(
        problem["file"],
        dir.path().join("s2.jsonl").to_str().expect("UTF-8")
    );
}

/// The check reads a transcript without its lock, so with a live holder the bytes after the
/// last newline may be an append it has not finished: the message says so, and the problem
/// stays a problem.
#[test]
fn check_says_a_torn_tail_under_a_held_lock_may_be_an_append_in_flight() {
    let (dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1"}"#);
    let transcript = dir.path().join("s1.jsonl");
    fs::write(&transcript, "{\"type\":\"session\"}\n{\"type\":\"mess").expect("tear it");
    let message = |output: &Output| String::from_utf8(output.stdout.clone()).expect("UTF-8");

    let free = run(args(&["check"], &path, &[]), b"");
    assert_eq!(free.status.code(), Some(DATA_ERR));
    assert!(
        message(&free).contains("an append was cut short by a crash"),
        "{}",
        message(&free)
    );

    let guard = sessionkit::lock::Locker::new()
        .acquire(&transcript)
        .expect("take the transcript's lock");
    let held = run(args(&["check"], &path, &[]), b"");
    let out = message(&held);
    assert_eq!(held.status.code(), Some(DATA_ERR), "{out}");
    assert!(
        out.contains(&format!(
            "ends in 13 bytes after its last newline, at byte offset 19, while its write lock is \
             held by pid {}: an append may have been in flight",
            std::process::id()
        )),
        "{out}"
    );
    drop(guard);
}

#[test]
fn check_reports_a_torn_transcript_tail_with_its_offset_and_changes_nothing() {
    let (dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1"}"#);
    let transcript = dir.path().join("s1.jsonl");
    let whole = "{\"type\":\"session\"}\n";
    let torn = "{\"type\":\"mess";
    fs::write(&transcript, format!("{whole}{torn}")).expect("tear the transcript");
    let before = contents(dir.path());

    let output = run(args(&["check"], &path, &[]), b"");
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(output.status.code(), Some(DATA_ERR), "{out}");
    assert!(output.stderr.is_empty());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "transcript-torn-tail: entry `a`: transcript `{}` ends in a torn tail of {} \
                 bytes at byte offset {}: an append was cut short by a crash; the library cuts \
                 it off when it next opens the transcript for appending, under its write lock, \
                 and so does `sessionkit doctor --fix` on the store's directory",
                transcript.display(),
                torn.len(),
                whole.len()
            ),
            format!(
                "checked `{}`: 1 entry, 1 journal record, 1 transcript: 1 problem",
                path.display()
            ),
        ],
        "{out}"
    );

    let report = json(
        &String::from_utf8(run(args(&["check", "--json"], &path, &[]), b"").stdout).expect("UTF-8"),
    );
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().expect("an array");
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["kind"], "transcript-torn-tail");
    assert_eq!(problems[0]["file"], transcript.to_str().expect("UTF-8"));
    assert_eq!(problems[0]["key"], "a");
    assert_eq!(problems[0]["offset"], whole.len());
    assert_eq!(problems[0]["line"], Value::Null);
    // Checking is reading: the torn bytes are still there.
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn check_says_doctor_fix_cuts_a_torn_transcript_tail_only_in_the_stores_directory() {
    let (dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1"}"#);
    set(
        &path,
        "topic",
        r#"{"sessionId":"s2","sessionFile":"t/s2-topic-7.jsonl"}"#,
    );
    let beside = dir.path().join("s1.jsonl");
    let below = dir.path().join("t/s2-topic-7.jsonl");
    fs::create_dir(dir.path().join("t")).expect("topic dir");
    for transcript in [&beside, &below] {
        fs::write(transcript, "{}\n{\"a\":").expect("tear the transcript");
    }
    let output = run(args(&["check"], &path, &[]), b"");
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(output.status.code(), Some(DATA_ERR), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("transcript-torn-tail: entry `a`: ")
            && lines[0].contains("torn tail of 5 bytes at byte offset 3")
            && lines[0].ends_with("and so does `sessionkit doctor --fix` on the store's directory"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "transcript-torn-tail: entry `topic`: transcript `{}` ends in a torn tail of 5 bytes",
            below.display()
        )) && lines[1].ends_with(
            "neither the library nor `sessionkit doctor --fix` cuts it, as both cut only \
             `<sessionId>.jsonl` transcripts directly in the store's directory"
        ),
        "{out}"
    );

    // As each line says: `doctor --fix` cuts the tail beside the store and not the one below.
    let fix = run(
        [
            OsString::from("doctor"),
            OsString::from("--fix"),
            dir.path().into(),
        ],
        b"",
    );
    assert_eq!(
        fs::read(&beside).expect("transcript"),
        b"{}\n",
        "{}",
        String::from_utf8_lossy(&fix.stdout)
    );
    assert_eq!(fs::read(&below).expect("transcript"), b"{}\n{\"a\":");
    let output = run(args(&["check"], &path, &[]), b"");
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(output.status.code(), Some(DATA_ERR), "{out}");
    assert!(
        out.starts_with("transcript-torn-tail: entry `topic`: ") && out.lines().count() == 2,
        "{out}"
    );
}

#[test]
fn check_reports_a_corrupt_snapshot_and_still_checks_the_journal() {
    let (dir, path) = store_dir();
    fs::write(&path, "").expect("an empty snapshot is damage");
    let record = upsert(1, "j", r#"{"sessionId":"sj"}"#);
    fs::write(journal(&path), format!("{HEADER}{record}")).expect("plant a journal");
    let before = contents(dir.path());
    let output = run(args(&["check"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(DATA_ERR));
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("snapshot-corrupt: "), "{out}");
    assert!(lines[0].contains("the file is empty"), "{out}");
    // The journal's entry is still checked for its transcript.
    assert!(
        lines[1].starts_with("transcript-missing: entry `j`"),
        "{out}"
    );
    assert!(
        lines[2].ends_with("1 entry, 1 journal record, 1 transcript: 2 problems"),
        "{out}"
    );
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn check_reports_a_bad_header_and_a_torn_only_line() {
    let (dir, path) = store_dir();
    fs::write(journal(&path), "{\"notAJournal\":true}\n").expect("plant");
    let report = json(
        &String::from_utf8(run(args(&["check", "--json"], &path, &[]), b"").stdout).expect("UTF-8"),
    );
    assert_eq!(report["problems"][0]["kind"], "journal-corrupt");
    assert_eq!(report["problems"][0]["line"], 1);

    // A journal whose only bytes are half a header: a crash while creating it.
    fs::write(journal(&path), "{\"sessionkitJour").expect("plant");
    let output = run(args(&["check"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(DATA_ERR));
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(out.starts_with("journal-torn-tail: "), "{out}");
    assert!(out.contains("at line 1 (byte offset 0)"), "{out}");
    assert_eq!(names(dir.path()), ["sessions.json.journal"]);
}

/// A dry run plans from the files as they are: an OpenClaw registry (a snapshot and no
/// journal) gets no journal, a torn journal tail stays, and nothing else changes. The real
/// pass opens the store, which cuts the tail, and says so on standard error.
#[test]
fn maintain_dry_run_changes_no_file_and_the_pass_warns_of_a_cut_tail() {
    let (dir, path) = store_dir();
    let old = now_ms() - 40 * 24 * 3600 * 1000;
    fs::write(
        &path,
        format!("{{\n  \"a\": {{\"sessionId\": \"s1\", \"updatedAt\": {old}}}\n}}\n"),
    )
    .expect("an OpenClaw registry");
    fs::write(dir.path().join("s1.jsonl"), "{}\n").expect("a transcript");
    let before = contents(dir.path());
    let out = ok(&["maintain"], &path, &["--dry-run"], b"");
    assert!(out.starts_with("would evict a (pruned)\n"), "{out}");
    assert_eq!(contents(dir.path()), before);

    // Now with a journal that ends in a torn tail.
    set(&path, "b", r#"{"sessionId":"s2"}"#);
    let mut journal_bytes = fs::read(journal(&path)).expect("the journal");
    journal_bytes.extend_from_slice(b"{\"seq\":7");
    fs::write(journal(&path), &journal_bytes).expect("a torn tail");
    let before = contents(dir.path());
    let out = ok(&["maintain"], &path, &["--dry-run"], b"");
    assert!(out.starts_with("would evict a (pruned)\n"), "{out}");
    assert_eq!(contents(dir.path()), before);

    let output = run(args(&["maintain"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(0));
    let warning = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(
        warning.starts_with("sessionkit: warning: cut a torn tail of 8 bytes ")
            && warning.lines().count() == 1,
        "{warning}"
    );
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(out.starts_with("evict a (pruned)\n"), "{out}");
    assert!(!dir.path().join("s1.jsonl").exists());
}

/// A snapshot lost beside a journal that a compaction wrote is a problem for `check`, an
/// error for every other command, and something `doctor --fix` leaves alone: opening the store
/// would go on with the journal's entries only.
#[test]
fn a_lost_snapshot_is_reported_and_left_alone() {
    let (dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1"}"#);
    ok(&["compact"], &path, &[], b"");
    fs::remove_file(&path).expect("lose the snapshot");
    // And a torn journal tail, which `doctor --fix` would otherwise cut by opening the store.
    let mut journal_bytes = fs::read(journal(&path)).expect("the journal");
    journal_bytes.extend_from_slice(b"{\"seq\":7");
    fs::write(journal(&path), &journal_bytes).expect("a torn tail");
    let before = contents(dir.path());

    let output = run(args(&["check", "--json"], &path, &[]), b"");
    assert_eq!(output.status.code(), Some(65));
    let report = json(&String::from_utf8(output.stdout).expect("UTF-8"));
    let kinds: Vec<&str> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["journal-torn-tail", "snapshot-missing"]);
    let line = fails(&run(args(&["get"], &path, &["a"]), b""), 65, &path);
    assert!(line.contains("the snapshot was lost"), "{line}");

    let mut doctor = vec![OsString::from("doctor"), OsString::from("--fix")];
    doctor.push(dir.path().as_os_str().to_owned());
    let output = run(doctor, b"");
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(out.contains("snapshot-missing (left)"), "{out}");
    assert_eq!(contents(dir.path()), before);
}

/// Entries `k0` to `k4` of sessions `s0` to `s4`, updated a millisecond apart, the oldest
/// five seconds ago.
fn five_entries(path: &Path) {
    let now = now_ms();
    for i in 0..5 {
        set(
            path,
            &format!("k{i}"),
            &format!(r#"{{"sessionId":"s{i}","updatedAt":{}}}"#, now - 5000 + i),
        );
    }
}

#[test]
fn maintain_shows_then_does_the_cap_and_archives_transcripts() {
    let (dir, path) = store_dir();
    five_entries(&path);
    fs::write(dir.path().join("s0.jsonl"), "{}\n").expect("plant a transcript");
    // Cap 2 with a slack of 1: five entries are over it, the three oldest go.
    let out = ok(
        &["maintain"],
        &path,
        &["--dry-run", "--max-entries", "2"],
        b"",
    );
    assert!(out.starts_with("would evict k0 (over the cap)\n"), "{out}");
    assert!(out.contains("would archive "), "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("would evict 3 (pruned 0, capped 3, disk 0)")),
        "{out}"
    );
    assert!(dir.path().join("s0.jsonl").exists());

    let out = ok(&["maintain"], &path, &["--max-entries", "2", "--json"], b"");
    let report = json(&out);
    assert_eq!(report["capped"], serde_json::json!(["k0", "k1", "k2"]));
    assert_eq!(report["dryRun"], false);
    assert_eq!(report["archived"].as_array().map(Vec::len), Some(1));
    assert!(!dir.path().join("s0.jsonl").exists());
    let listed = ok(&["list"], &path, &[], b"");
    assert_eq!(listed.lines().count(), 2, "{listed}");
}

/// A store named by a bare file name, from its own directory: the transcripts a pass acts on
/// are named as `check` names them, without a `./` the directory listing would add. And a
/// one-byte torn tail is `1 byte`.
#[test]
fn maintain_names_files_as_the_store_path_was_given() {
    let (dir, path) = store_dir();
    five_entries(&path);
    fs::write(dir.path().join("s0.jsonl"), "{}\n").expect("plant a transcript");
    fs::write(dir.path().join("s3.jsonl"), "{}\n").expect("plant a transcript");
    let mut journal_bytes = fs::read(journal(&path)).expect("the journal");
    journal_bytes.push(b'{');
    fs::write(journal(&path), &journal_bytes).expect("a torn tail of one byte");
    let maintain = |rest: &[&str]| {
        let mut args = vec!["store", "maintain", "sessions.json", "--max-entries", "2"];
        args.extend_from_slice(rest);
        let output = run_in(dir.path(), args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            String::from_utf8(output.stdout).expect("UTF-8"),
            String::from_utf8(output.stderr).expect("UTF-8"),
        )
    };
    let (out, err) = maintain(&["--dry-run"]);
    assert!(out.lines().any(|l| l == "would archive s0.jsonl"), "{out}");
    assert_eq!(err, "");
    let (out, err) = maintain(&[]);
    assert!(out.lines().any(|l| l == "archive s0.jsonl"), "{out}");
    assert!(!out.contains("./"), "{out}");
    assert!(
        err.starts_with(
            "sessionkit: warning: cut a torn tail of 1 byte from `sessions.json.journal`"
        ),
        "{err}"
    );
    // k4's transcript was never written: `check` names it the same way.
    let output = run_in(dir.path(), ["store", "check", "sessions.json"]);
    let out = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        out.starts_with("transcript-missing: entry `k4`: transcript `s4.jsonl` does not exist\n"),
        "{out}"
    );
}

#[test]
fn maintain_frees_nothing_for_subdirectories_that_alone_pass_the_budget_and_says_so() {
    let (dir, path) = store_dir();
    set(
        &path,
        "k0",
        &format!(r#"{{"sessionId":"s0","updatedAt":{}}}"#, now_ms()),
    );
    // An archive made now, inside its 30 days, and 30,000 bytes below a subdirectory: past
    // the budget of 20,000 and its high water mark of 16,000 on their own.
    let made = sessionkit::lock::format_iso8601_ms(now_ms()).replace(['-', ':'], "");
    let archive = dir.path().join(format!("gone.jsonl.deleted.{made}"));
    fs::write(&archive, vec![b'x'; 1000]).expect("plant an archive");
    fs::create_dir(dir.path().join("media")).expect("create a subdirectory");
    fs::write(dir.path().join("media/big"), vec![b'x'; 30_000]).expect("plant a big file");

    let output = run(
        args(
            &["maintain"],
            &path,
            &["--max-disk-bytes", "20000", "--json"],
        ),
        b"",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report = json(&String::from_utf8(output.stdout).expect("stdout is UTF-8"));
    assert_eq!(report["archivesRemoved"], serde_json::json!([]));
    assert_eq!(report["diskEvicted"], serde_json::json!([]));
    assert!(archive.exists());
    let after = report["diskBytesAfter"]
        .as_u64()
        .expect("a size after the pass");
    assert!(after > 30_000, "{report}");
    assert_eq!(
        stderr,
        format!(
            "sessionkit: warning: `{}` still takes {after} bytes after the pass, over the budget \
             of 20000 bytes; maintenance never removes the files of subdirectories, other files \
             or active entries, and frees nothing for the budget while subdirectories alone take \
             80 % of it; `sessionkit doctor --max-disk-bytes 20000` shows where the bytes are\n",
            dir.path().display()
        )
    );
}

#[test]
fn maintain_needs_an_existing_store_and_sane_options() {
    let (_dir, path) = store_dir();
    let output = run(args(&["maintain"], &path, &[]), b"");
    fails(&output, IO_ERR, &path);
    let output = run(
        args(&["maintain"], &path, &["--no-cap", "--max-entries", "3"]),
        b"",
    );
    assert_eq!(output.status.code(), Some(USAGE), "{output:?}");
}

/// Opening a store to write removes the store's temp files that a crash left (older than
/// 5 minutes), and says so in one warning line; a young one is left to its writer.
#[test]
fn a_write_that_removes_a_crash_s_temp_files_says_so() {
    let (dir, path) = store_dir();
    set(&path, "a", r#"{"sessionId":"s1"}"#);
    let old = dir.path().join(".sessions.json.123.0123456789abcdef.sktmp");
    let young = dir
        .path()
        .join(".sessions.json.journal.77.0123456789abcdef.sktmp");
    fs::write(&old, b"{}").unwrap();
    fs::write(&young, b"{}").unwrap();
    let ten_minutes_ago = SystemTime::now() - std::time::Duration::from_secs(600);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(ten_minutes_ago)
        .unwrap();

    let output = run(args(&["set"], &path, &["b"]), br#"{"sessionId":"s2"}"#);
    assert_eq!(output.status.code(), Some(0));
    let warning = String::from_utf8(output.stderr).expect("UTF-8");
    assert_eq!(
        warning,
        format!(
            "sessionkit: warning: removed 1 temp file of the store's that a crash left in `{}` \
             (older than 5 minutes)\n",
            dir.path().display()
        )
    );
    assert!(!old.exists());
    assert!(young.exists());
}

/// `maintain --json` on a path that is not valid UTF-8 exits 65 before the pass, so the orphan
/// it would have archived is still there.
#[cfg(unix)]
#[test]
fn maintain_json_with_a_path_json_cannot_hold_changes_nothing() {
    use std::os::unix::ffi::OsStrExt;

    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join(std::ffi::OsStr::from_bytes(b"nu\xff"));
    fs::create_dir(&dir).unwrap();
    let path = dir.join("sessions.json");
    set(&path, "a", r#"{"sessionId":"s1","updatedAt":1}"#);
    let orphan = dir.join("orphan.jsonl");
    fs::write(&orphan, b"{}\n").unwrap();
    let three_hours_ago = SystemTime::now() - std::time::Duration::from_secs(3 * 3600);
    fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(three_hours_ago)
        .unwrap();
    let before = contents(&dir);

    for dry_run in [false, true] {
        let extra: &[&str] = if dry_run {
            &["--json", "--dry-run", "--no-prune"]
        } else {
            &["--json", "--no-prune"]
        };
        let output = run(args(&["maintain"], &path, extra), b"");
        let line = assert_error_line(&output, DATA_ERR);
        assert!(line.contains("invalid UTF-8"), "{line}");
        assert_eq!(contents(&dir), before, "dry run {dry_run}");
    }
    // Without `--json` the same pass archives the orphan.
    run(args(&["maintain"], &path, &["--no-prune"]), b"");
    assert!(!orphan.exists());
}
