//! Owner records: parsing, fixtures and round trips.

use proptest::prelude::*;
use serde_json::{Value, json};
use sessionkit_write_lock::{OwnerRecord, Payload, RECORD_FORMAT, parse_record};

/// 2026-05-01T10:00:00.000Z, from `date -u -d 2026-05-01T10:00:00.000Z +%s%3N`.
const MAY_FIRST_MS: u64 = 1_777_629_600_000;
/// 2026-11-21T05:10:56.123Z, from `date -u -d 2026-11-21T05:10:56.123Z +%s%3N`.
const NOV_21_MS: u64 = 1_795_237_856_123;
/// The last millisecond of year 9999.
const MAX_ISO_MS: u64 = 253_402_300_799_999;

fn record(bytes: &[u8]) -> OwnerRecord {
    match parse_record(bytes) {
        Payload::Record(r) => r,
        other => panic!("expected a record, got {other:?}"),
    }
}

fn json_record(value: Value) -> OwnerRecord {
    record(&serde_json::to_vec(&value).unwrap())
}

fn full_record() -> OwnerRecord {
    let mut r = OwnerRecord::default();
    r.pid = Some(31337);
    r.created_at_ms = Some(NOV_21_MS);
    r.starttime = Some(987_654);
    r.max_hold_ms = Some(1_020_000);
    r.format = Some(RECORD_FORMAT);
    r.token = Some("0123456789abcdef0123456789abcdef".to_owned());
    r.hostname = Some("build-box".to_owned());
    r.boot_id = Some("6f1f6a8e-2c3b-4b5e-9a0d-3d2b1c0e9f8a".to_owned());
    r.program = Some("sessionkit".to_owned());
    r.label = Some("agent:main transcript".to_owned());
    r.generation = Some(42);
    r.os_lock = true;
    r
}

#[test]
fn an_openclaw_live_lock_parses() {
    let mut want = OwnerRecord::default();
    want.pid = Some(48213);
    want.created_at_ms = Some(MAY_FIRST_MS);
    want.starttime = Some(12345);
    want.max_hold_ms = Some(300_000);
    let got = parse_record(include_bytes!("../fixtures/openclaw-live.json"));
    assert_eq!(got, Payload::Record(want));
    let r = got.record().unwrap();
    assert!(!r.is_ours());
    assert!(!r.promises_os_lock());
}

#[test]
fn an_openclaw_lock_without_starttime_parses() {
    let mut want = OwnerRecord::default();
    want.pid = Some(48213);
    want.created_at_ms = Some(MAY_FIRST_MS);
    want.max_hold_ms = Some(1_020_000);
    assert_eq!(
        parse_record(include_bytes!("../fixtures/openclaw-no-starttime.json")),
        Payload::Record(want)
    );
}

#[test]
fn an_empty_object_is_a_record_with_nothing_in_it() {
    assert_eq!(
        parse_record(include_bytes!("../fixtures/openclaw-empty-object.json")),
        Payload::Record(OwnerRecord::default())
    );
}

#[test]
fn invalid_openclaw_fields_are_dropped() {
    assert_eq!(
        parse_record(include_bytes!("../fixtures/openclaw-bad-fields.json")),
        Payload::Record(OwnerRecord::default())
    );
}

#[test]
fn empty_and_blank_files_are_empty() {
    assert_eq!(
        parse_record(include_bytes!("../fixtures/empty.lock")),
        Payload::Empty
    );
    assert_eq!(parse_record(b" \n\t\r\n"), Payload::Empty);
}

#[test]
fn non_objects_are_unparsable() {
    assert_eq!(
        parse_record(include_bytes!("../fixtures/garbage.lock")),
        Payload::Unparsable
    );
    assert_eq!(
        parse_record(include_bytes!("../fixtures/array.lock")),
        Payload::Unparsable
    );
    for bytes in [
        &b"null"[..],
        b"12",
        b"\"pid\"",
        b"true",
        b"{\"pid\": 1",
        b"{} {}",
        b"{\"pid\": 1}x",
        b"\xef\xbb\xbf{}",
        b"\xff\xfe",
        b"\0",
    ] {
        assert_eq!(parse_record(bytes), Payload::Unparsable, "{bytes:?}");
        assert_eq!(parse_record(bytes).record(), None);
    }
}

#[test]
fn deep_nesting_is_unparsable_not_a_crash() {
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(parse_record(deep.as_bytes()), Payload::Unparsable);
}

#[test]
fn our_full_record_parses_and_writes_back_byte_for_byte() {
    let fixture = include_bytes!("../fixtures/sessionkit-v1.json");
    let got = parse_record(fixture);
    assert_eq!(got, Payload::Record(full_record()));
    let r = got.record().unwrap();
    assert!(r.is_ours());
    assert!(r.promises_os_lock());
    assert_eq!(
        String::from_utf8(r.to_bytes()).unwrap(),
        String::from_utf8(fixture.to_vec()).unwrap()
    );
}

#[test]
fn to_bytes_omits_absent_fields_but_always_writes_os_lock() {
    assert_eq!(
        OwnerRecord::default().to_bytes(),
        b"{\n  \"osLock\": false\n}\n"
    );
    let mut r = OwnerRecord::default();
    r.pid = Some(7);
    r.label = Some("x".to_owned());
    assert_eq!(
        String::from_utf8(r.to_bytes()).unwrap(),
        "{\n  \"pid\": 7,\n  \"label\": \"x\",\n  \"osLock\": false\n}\n"
    );
}

#[test]
fn serialize_is_the_same_object_as_to_bytes() {
    let r = full_record();
    let via_serde = serde_json::to_value(&r).unwrap();
    let via_bytes: Value = serde_json::from_slice(&r.to_bytes()).unwrap();
    assert_eq!(via_serde, via_bytes);
    assert_eq!(via_serde["createdAt"], json!("2026-11-21T05:10:56.123Z"));
    // Key order matters for the file; serde_json's compact form keeps it.
    let compact = serde_json::to_string(&r).unwrap();
    assert!(
        compact.starts_with("{\"pid\":31337,\"createdAt\":"),
        "{compact}"
    );
    assert!(
        compact.ends_with("\"generation\":42,\"osLock\":true}"),
        "{compact}"
    );
}

#[test]
fn only_our_records_promise_an_os_lock() {
    let theirs = json_record(json!({"pid": 5, "osLock": true}));
    assert!(theirs.os_lock);
    assert!(!theirs.is_ours());
    assert!(!theirs.promises_os_lock());
    let ours_without = json_record(json!({"pid": 5, "sessionkit": 1}));
    assert!(ours_without.is_ours());
    assert!(!ours_without.promises_os_lock());
    let future = json_record(json!({"sessionkit": 7, "osLock": true}));
    assert_eq!(future.format, Some(7));
    assert!(future.promises_os_lock());
}

#[test]
fn pid_must_be_an_integer_from_1_to_u32_max() {
    let pid = |v: Value| json_record(json!({ "pid": v })).pid;
    assert_eq!(pid(json!(1)), Some(1));
    assert_eq!(pid(json!(u32::MAX)), Some(u32::MAX));
    // JavaScript has no integer type: an integral float is an integer.
    assert_eq!(pid(json!(12.0)), Some(12));
    assert_eq!(json_record_raw(br#"{"pid": 1.2e1}"#).pid, Some(12));
    for bad in [
        json!(0),
        json!(-1),
        json!(-0.5),
        json!(12.5),
        json!(u64::from(u32::MAX) + 1),
        json!(1e300),
        json!("12"),
        json!(null),
        json!(true),
        json!([12]),
        json!({"pid": 12}),
    ] {
        assert_eq!(pid(bad.clone()), None, "{bad}");
    }
}

fn json_record_raw(bytes: &[u8]) -> OwnerRecord {
    record(bytes)
}

#[test]
fn created_at_must_be_a_valid_iso_instant() {
    let created = |v: Value| json_record(json!({ "createdAt": v })).created_at_ms;
    assert_eq!(
        created(json!("2026-05-01T10:00:00.000Z")),
        Some(MAY_FIRST_MS)
    );
    assert_eq!(
        created(json!("2026-05-01T12:00:00+02:00")),
        Some(MAY_FIRST_MS)
    );
    assert_eq!(created(json!("1970-01-01T00:00:00Z")), Some(0));
    for bad in [
        json!("yesterday"),
        json!(""),
        json!("2026-02-30T00:00:00.000Z"),
        json!("1969-12-31T23:59:59.999Z"),
        json!("2026-05-01T10:00:00.000"),
        json!(MAY_FIRST_MS),
        json!(null),
    ] {
        assert_eq!(created(bad.clone()), None, "{bad}");
    }
}

#[test]
fn numeric_fields_have_their_ranges() {
    let r = json_record(json!({"starttime": 0, "maxHoldMs": 1, "generation": 0, "sessionkit": 1}));
    assert_eq!(r.starttime, Some(0));
    assert_eq!(r.max_hold_ms, Some(1));
    assert_eq!(r.generation, Some(0));
    assert_eq!(r.format, Some(1));

    let r =
        json_record(json!({"starttime": u64::MAX, "generation": u64::MAX, "maxHoldMs": u64::MAX}));
    assert_eq!(r.starttime, Some(u64::MAX));
    assert_eq!(r.generation, Some(u64::MAX));
    assert_eq!(r.max_hold_ms, Some(u64::MAX));

    let r =
        json_record(json!({"starttime": -1, "maxHoldMs": 0, "generation": -3, "sessionkit": 0}));
    assert_eq!(r, OwnerRecord::default());

    let r = json_record(
        json!({"starttime": 1.5, "maxHoldMs": "300000", "generation": 2.5,
        "sessionkit": u64::from(u32::MAX) + 1}),
    );
    assert_eq!(r, OwnerRecord::default());

    // Integral floats count only up to 2^53 - 1, as JavaScript holds them exactly.
    let r = json_record_raw(br#"{"starttime": 2.5e3, "maxHoldMs": 1e15, "generation": 1e16}"#);
    assert_eq!(r.starttime, Some(2500));
    assert_eq!(r.max_hold_ms, Some(1_000_000_000_000_000));
    assert_eq!(r.generation, None);
}

#[test]
fn strings_must_be_non_empty_strings() {
    let r = json_record(
        json!({"token": "", "hostname": 3, "bootId": null, "program": ["x"],
        "label": {"a": 1}}),
    );
    assert_eq!(r, OwnerRecord::default());
    let r = json_record(
        json!({"token": "t", "hostname": " ", "bootId": "b", "program": "p",
        "label": "l"}),
    );
    assert_eq!(r.token.as_deref(), Some("t"));
    assert_eq!(r.hostname.as_deref(), Some(" "));
    assert_eq!(r.boot_id.as_deref(), Some("b"));
    assert_eq!(r.program.as_deref(), Some("p"));
    assert_eq!(r.label.as_deref(), Some("l"));
}

#[test]
fn os_lock_is_true_only_for_the_boolean_true() {
    for (v, want) in [
        (json!(true), true),
        (json!(false), false),
        (json!("true"), false),
        (json!(1), false),
        (json!(null), false),
    ] {
        assert_eq!(json_record(json!({ "osLock": v })).os_lock, want, "{v}");
    }
}

#[test]
fn unknown_keys_are_ignored_and_the_last_duplicate_wins() {
    let r = json_record_raw(br#"{"pid": 1, "nested": {"pid": 2}, "Pid": 3, "pid": 4}"#);
    let mut want = OwnerRecord::default();
    want.pid = Some(4);
    assert_eq!(r, want);
}

/// Any non-empty string, including whitespace, quotes, control characters and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:_. -]{1,24}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn owner_record() -> impl Strategy<Value = OwnerRecord> {
    (
        (
            proptest::option::of(1..=u32::MAX),
            proptest::option::of(0..=MAX_ISO_MS),
            proptest::option::of(any::<u64>()),
            proptest::option::of(1..=u64::MAX),
            1..=u32::MAX,
            any::<bool>(),
        ),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |(
                (pid, created_at_ms, starttime, max_hold_ms, format, os_lock),
                (token, hostname, boot_id, program, label, generation),
            )| {
                let mut r = OwnerRecord::default();
                r.pid = pid;
                r.created_at_ms = created_at_ms;
                r.starttime = starttime;
                r.max_hold_ms = max_hold_ms;
                r.format = Some(format);
                r.token = token;
                r.hostname = hostname;
                r.boot_id = boot_id;
                r.program = program;
                r.label = label;
                r.generation = generation;
                r.os_lock = os_lock;
                r
            },
        )
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-3i64..5).prop_map(|n| json!(n as f64)),
        (0u64..=u64::from(u32::MAX) + 2).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        Just(json!("")),
        Just(json!("2026-05-01T10:00:00.000Z")),
        Just(json!("2026-05-01T10:00:00.000+25:00")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KEYS: [&str; 13] = [
    "pid",
    "createdAt",
    "starttime",
    "maxHoldMs",
    "sessionkit",
    "token",
    "hostname",
    "bootId",
    "program",
    "label",
    "generation",
    "osLock",
    "unknown",
];

/// Whatever the bytes: blank is `Empty` and only blank is; a record read from them writes out
/// bytes that read back as the same record.
fn check_payload(bytes: &[u8]) -> Result<(), TestCaseError> {
    let blank = bytes.iter().all(u8::is_ascii_whitespace);
    match parse_record(bytes) {
        Payload::Empty => prop_assert!(blank),
        Payload::Unparsable => prop_assert!(!blank),
        Payload::Record(r) => {
            prop_assert!(!blank);
            prop_assert_eq!(parse_record(&r.to_bytes()), Payload::Record(r));
        }
        other => {
            return Err(TestCaseError::fail(format!(
                "a payload this test does not know: {other:?}"
            )));
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn our_records_round_trip(r in owner_record()) {
        let bytes = r.to_bytes();
        prop_assert!(bytes.ends_with(b"}\n"), "no closing brace and newline");
        prop_assert_eq!(parse_record(&bytes), Payload::Record(r.clone()));
        // The file is byte for byte serde_json's pretty form of the `Serialize` output.
        let mut pretty = serde_json::to_vec_pretty(&r).unwrap();
        pretty.push(b'\n');
        prop_assert_eq!(String::from_utf8(bytes).unwrap(), String::from_utf8(pretty).unwrap());
    }

    #[test]
    fn any_bytes_read_as_one_payload_that_writes_back(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_payload(&bytes)?;
    }

    #[test]
    fn parse_never_panics_on_json_ish_bytes(bytes in proptest::collection::vec(
        prop_oneof![any::<u8>(), Just(b'{'), Just(b'}'), Just(b'"'), Just(b':'), Just(b' ')],
        0..256,
    )) {
        check_payload(&bytes)?;
    }

    #[test]
    fn any_object_of_our_keys_reads_as_a_valid_record(
        fields in proptest::collection::vec((proptest::sample::select(&KEYS[..]), json_value()), 0..16),
    ) {
        let object: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let bytes = serde_json::to_vec_pretty(&Value::Object(object.clone())).unwrap();
        let r = match parse_record(&bytes) {
            Payload::Record(r) => r,
            other => return Err(TestCaseError::fail(format!("not a record: {other:?}"))),
        };
        // Every field that survived obeys its rule and came from its key.
        prop_assert!(r.pid.is_none_or(|p| p >= 1));
        prop_assert!(r.max_hold_ms.is_none_or(|m| m >= 1));
        prop_assert!(r.format.is_none_or(|f| f >= 1));
        for (key, value) in [
            ("token", &r.token),
            ("hostname", &r.hostname),
            ("bootId", &r.boot_id),
            ("program", &r.program),
            ("label", &r.label),
        ] {
            if let Some(v) = value {
                prop_assert!(!v.is_empty());
                prop_assert_eq!(object.get(key).and_then(Value::as_str), Some(v.as_str()));
            }
        }
        prop_assert_eq!(r.os_lock, object.get("osLock") == Some(&Value::Bool(true)));
        prop_assert_eq!(r.pid.is_some(), object.get("pid").is_some_and(|v| v.as_u64().is_some_and(|n| (1..=u64::from(u32::MAX)).contains(&n))
            || v.as_f64().is_some_and(|f| f.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&f))));
        prop_assert_eq!(r.created_at_ms.is_some(), object.get("createdAt") == Some(&json!("2026-05-01T10:00:00.000Z")));
        // What was read writes back and reads again as the same record.
        prop_assert_eq!(parse_record(&r.to_bytes()), Payload::Record(r.clone()));
    }
}
