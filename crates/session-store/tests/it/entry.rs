//! Entries, patches and the `updatedAt` rule.

use serde_json::json;
use sessionkit_session_store::{Activity, Entry, Error, Input, Patch, resolve_updated_at};

fn entry(text: &str) -> Entry {
    Entry::parse(text).unwrap()
}

fn patch(text: &str) -> Patch {
    Patch::parse(text).unwrap()
}

#[test]
fn rfc7396_appendix_a_examples_for_objects() {
    // RFC 7396, Appendix A, every case whose target and patch are objects; the expected text is
    // the byte-exact result (patched fields last).
    let cases = [
        (r#"{"a":"b"}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
        (r#"{"a":"b"}"#, r#"{"b":"c"}"#, r#"{"a":"b","b":"c"}"#),
        (r#"{"a":"b"}"#, r#"{"a":null}"#, r#"{}"#),
        (r#"{"a":"b","b":"c"}"#, r#"{"a":null}"#, r#"{"b":"c"}"#),
        (r#"{"a":["b"]}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
        (r#"{"a":"c"}"#, r#"{"a":["b"]}"#, r#"{"a":["b"]}"#),
        (
            r#"{"a":{"b":"c"}}"#,
            r#"{"a":{"b":"d","c":null}}"#,
            r#"{"a":{"b":"d"}}"#,
        ),
        (r#"{"a":[{"b":"c"}]}"#, r#"{"a":[1]}"#, r#"{"a":[1]}"#),
        (r#"{"e":null}"#, r#"{"a":1}"#, r#"{"e":null,"a":1}"#),
        ("{}", r#"{"a":{"bb":{"ccc":null}}}"#, r#"{"a":{"bb":{}}}"#),
    ];
    for (target, p, expected) in cases {
        let merged = entry(target).merge_patch(&patch(p));
        assert_eq!(merged.as_str(), expected, "{target} + {p}");
    }
}

#[test]
fn non_object_patches_and_entries_are_refused() {
    // RFC 7396 would replace the whole document; an entry must stay an object.
    for text in [r#"["c"]"#, "null", r#""bar""#, "1"] {
        let err = Patch::parse(text).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        assert!(
            matches!(
                err,
                Error::Invalid {
                    input: Input::Patch,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = Entry::parse(text).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid {
                    input: Input::Entry,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    for text in ["", "{", "{} {}", "{\"a\":}", "{\"a\":1,}"] {
        let err = Entry::parse(text).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Invalid {
                    source: Some(_),
                    ..
                }
            ),
            "{text:?}: {err:?}"
        );
        assert!(Patch::parse(text).is_err(), "{text:?}");
    }
    assert!(Entry::from_value(&json!([1])).is_err());
    assert!(Patch::from_value(&json!(null)).is_err());
}

#[test]
fn field_bytes_survive_and_only_names_are_canonicalised() {
    let text = "{ \"\\u0061\" : 1.0,\n  \"b\": {\n    \"c\": 1e3\n  },\n  \"s\": \"\\u00e9\\n\" }";
    let e = entry(text);
    assert_eq!(
        e.as_str(),
        "{\"a\":1.0,\"b\":{\n    \"c\": 1e3\n  },\"s\":\"\\u00e9\\n\"}"
    );
    assert_eq!(e.get("a").unwrap().get(), "1.0");
    assert_eq!(e.get("s").unwrap().get(), "\"\\u00e9\\n\"");
    assert!(e.get("c").is_none());
    let names: Vec<String> = e
        .fields()
        .into_iter()
        .map(|(n, _)| n.into_owned())
        .collect();
    assert_eq!(names, ["a", "b", "s"]);
    assert_eq!(
        e.to_value(),
        json!({"a": 1.0, "b": {"c": 1000.0}, "s": "é\n"})
    );
    // Parsing the canonical text again is the identity.
    assert_eq!(entry(e.as_str()), e);
}

#[test]
fn indexed_fields_tolerate_absence_and_other_types() {
    let e = entry(r#"{"sessionId":"s\u0031","updatedAt":1763708000000}"#);
    assert_eq!(e.session_id(), Some("s1"));
    assert_eq!(e.updated_at(), Some(1_763_708_000_000));

    let e = entry(r#"{"sessionId":42,"updatedAt":"2025-01-02"}"#);
    assert_eq!((e.session_id(), e.updated_at()), (None, None));
    // The odd values keep their bytes.
    assert_eq!(e.as_str(), r#"{"sessionId":42,"updatedAt":"2025-01-02"}"#);

    let e = entry(r#"{"updatedAt":1.7e12}"#);
    assert_eq!(e.updated_at(), Some(1_700_000_000_000));
    assert_eq!(entry(r#"{"updatedAt":1.5}"#).updated_at(), None);
    assert_eq!(
        entry(r#"{"updatedAt":null,"sessionId":null}"#).session_id(),
        None
    );
    assert_eq!(entry("{}"), Entry::empty());
}

#[test]
fn patches_update_the_indexed_fields() {
    let e = entry(r#"{"sessionId":"old","updatedAt":5}"#);
    let p = patch(r#"{"sessionId":"new","updatedAt":9}"#);
    let merged = e.merge_patch(&p);
    assert_eq!(
        (merged.session_id(), merged.updated_at()),
        (Some("new"), Some(9))
    );
    let removed = merged.merge_patch(&patch(r#"{"sessionId":null}"#));
    assert_eq!(removed.session_id(), None);
    assert_eq!(removed.as_str(), r#"{"updatedAt":9}"#);
}

#[test]
fn patches_are_stored_minified() {
    let p = patch("{ \"a\" : { \"b\" : [ 1 ,\n 2 ] } , \"s\" : \" x \" }");
    assert_eq!(p.as_str(), r#"{"a":{"b":[1,2]},"s":" x "}"#);
    assert_eq!(p.get("s").unwrap().get(), "\" x \"");
    assert_eq!(p.to_value(), json!({"a": {"b": [1, 2]}, "s": " x "}));
    assert_eq!(Patch::empty().as_str(), "{}");
    assert_eq!(
        Patch::from_value(&json!({"k": 1})).unwrap().as_str(),
        r#"{"k":1}"#
    );
}

#[test]
fn resolve_updated_at_never_passes_now() {
    assert_eq!(resolve_updated_at(None, None, 100), 100);
    assert_eq!(resolve_updated_at(Some(50), Some(70), 100), 100);
    // A future value (a clock that went back, a skewed writer) does not stick.
    assert_eq!(resolve_updated_at(Some(500), None, 100), 100);
    assert_eq!(resolve_updated_at(None, Some(500), 100), 100);
    assert_eq!(resolve_updated_at(Some(i64::MAX), Some(i64::MIN), -3), -3);
}

#[test]
fn resolve_sets_updated_at_by_activity() {
    let existing = entry(r#"{"sessionId":"s","updatedAt":1.0e3,"label":"a"}"#);
    let p = patch(r#"{"updatedAt":99999,"label":"b"}"#);

    let advanced = p.resolve(Some(&existing), 5_000, Activity::Advance);
    assert_eq!(advanced.as_str(), r#"{"label":"b","updatedAt":5000}"#);
    assert_eq!(advanced.updated_at(), Some(5_000));

    // Preserve: the existing field keeps its bytes (`1.0e3`).
    let preserved = p.resolve(Some(&existing), 5_000, Activity::Preserve);
    assert_eq!(preserved.as_str(), r#"{"label":"b"}"#);
    let merged = existing.merge_patch(&preserved);
    assert_eq!(
        merged.as_str(),
        r#"{"sessionId":"s","updatedAt":1.0e3,"label":"b"}"#
    );

    // Preserve without an existing updatedAt (or without an entry) still sets one.
    for base in [None, Some(entry(r#"{"updatedAt":"x"}"#))] {
        let resolved = p.resolve(base.as_ref(), 5_000, Activity::Preserve);
        assert_eq!(resolved.updated_at(), Some(5_000), "{base:?}");
    }
    assert_eq!(Activity::default(), Activity::Advance);
}

#[test]
fn touched_moves_updated_at_to_now() {
    let e = entry(r#"{"updatedAt":1,"sessionId":"s"}"#);
    let t = e.touched(42);
    assert_eq!(t.as_str(), r#"{"sessionId":"s","updatedAt":42}"#);
    assert_eq!(e.with_updated_at(7).updated_at(), Some(7));
}

/// `upsert_with`'s stamp: the new entry's fields as given, `updatedAt` by the rule (so an
/// entry from a clock ahead of ours gets now), or with `Preserve` the existing entry's.
#[test]
fn stamped_sets_updated_at_by_activity() {
    let now = 5_000;
    let new = entry(r#"{"sessionId":"s","updatedAt":9000,"x":[1, 2]}"#);
    let old = entry(r#"{"sessionId":"old","updatedAt":1000}"#);
    let untimed = entry(r#"{"sessionId":"old"}"#);
    let cases = [
        (None, Activity::Advance, now),
        (Some(&old), Activity::Advance, now),
        (None, Activity::Preserve, now),
        (Some(&old), Activity::Preserve, 1000),
        (Some(&untimed), Activity::Preserve, now),
    ];
    for (existing, activity, at) in cases {
        let stamped = new.stamped(existing, now, activity);
        assert_eq!(stamped.updated_at(), Some(at), "{existing:?} {activity:?}");
        assert_eq!(stamped.session_id(), Some("s"));
        assert_eq!(stamped.get("x").unwrap().get(), "[1, 2]");
    }
}
