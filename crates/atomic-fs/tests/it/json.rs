//! JSON helpers: compact and pretty writes, and reads that tell not-found, corrupt and I/O apart.

use std::collections::BTreeMap;
use std::fs;

use serde::{Deserialize, Serialize};
use sessionkit_atomic_fs::{AtomicWriter, Error, Step, read_json};

use crate::util::Scratch;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "sessionId")]
    session_id: String,
    #[serde(rename = "updatedAt")]
    updated_at: u64,
}

#[test]
fn compact_and_pretty_round_trip() {
    let dir = Scratch::new("json");
    let value = BTreeMap::from([(
        "agent:main".to_string(),
        Entry {
            session_id: "s1".into(),
            updated_at: 7,
        },
    )]);
    sessionkit_atomic_fs::write_json(dir.join("c.json"), &value).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("c.json")).unwrap(),
        r#"{"agent:main":{"sessionId":"s1","updatedAt":7}}"#
    );
    sessionkit_atomic_fs::write_json_pretty(dir.join("p.json"), &value).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("p.json")).unwrap(),
        "{\n  \"agent:main\": {\n    \"sessionId\": \"s1\",\n    \"updatedAt\": 7\n  }\n}"
    );
    let back: BTreeMap<String, Entry> = read_json(dir.join("p.json")).unwrap();
    assert_eq!(back, value);
}

#[test]
fn missing_file_is_not_found() {
    let dir = Scratch::new("json404");
    let err = read_json::<serde_json::Value>(dir.join("nope.json")).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(!err.is_corrupt());
    assert_eq!(err.path(), dir.join("nope.json"));
}

#[test]
fn corrupt_file_reports_line_and_column() {
    let dir = Scratch::new("jsonbad");
    let path = dir.join("sessions.json");
    fs::write(&path, "{\n  \"a\": 1,\n  \"b\": @\n}").unwrap();
    let err = read_json::<serde_json::Value>(&path).unwrap_err();
    assert!(err.is_corrupt(), "{err:?}");
    let Error::Corrupt { line, column, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*line, 3);
    assert!(*column >= 8, "column {column}");
    assert!(err.to_string().contains("line 3"), "{err}");
    // A read never changes the file.
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\n  \"a\": 1,\n  \"b\": @\n}"
    );
}

#[test]
fn wrong_shape_is_corrupt_too() {
    let dir = Scratch::new("jsonshape");
    let path = dir.join("e.json");
    fs::write(&path, r#"{"sessionId": 5, "updatedAt": 1}"#).unwrap();
    let err = read_json::<Entry>(&path).unwrap_err();
    assert!(err.is_corrupt(), "{err:?}");
}

#[test]
fn unreadable_path_is_io_not_corrupt() {
    let dir = Scratch::new("jsonio");
    fs::create_dir(dir.join("d")).unwrap();
    let err = read_json::<serde_json::Value>(dir.join("d")).unwrap_err();
    assert!(!err.is_not_found() && !err.is_corrupt(), "{err:?}");
    assert_eq!(err.step(), Some(Step::Read));
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(21), "EISDIR");
}

#[test]
fn unserialisable_value_writes_nothing() {
    let dir = Scratch::new("jsonser");
    let bad = BTreeMap::from([((1, 2), 3)]);
    let err = AtomicWriter::new()
        .write_json(dir.join("x.json"), &bad)
        .unwrap_err();
    assert!(matches!(err, Error::Serialize { .. }), "{err:?}");
    assert!(err.is_bad_input());
    assert!(dir.names().is_empty());
}
