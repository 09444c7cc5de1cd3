//! Generators of raw JSON text (with the byte-level variety real files have), entries, patches
//! and journal records.

use proptest::prelude::*;
use sessionkit_session_store::{Entry, EvictReason, Patch, Record, WriterId};

/// Field names: few, so that patches hit existing fields and objects get duplicate keys.
pub(crate) const NAMES: [&str; 6] = ["a", "b", "c", "label", "x\u{e9}", "d\\\"q"];
/// Session keys: few, so records collide.
pub(crate) const KEYS: [&str; 5] = [
    "agent:main:main",
    "agent:main:x",
    "cron:nightly",
    "hook:1b9d",
    "agent:ops:main",
];
pub(crate) const SESSIONS: [&str; 3] = ["s1", "s2", "s\\u0033"];

/// Leaf tokens whose bytes differ from serde_json's output for the same value.
const LEAVES: [&str; 16] = [
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1.0",
    "1e3",
    "2.50",
    "-2.5E-3",
    "12345678901234567890",
    "\"x\"",
    "\"\\u00e9\"",
    "\"a\\nb\"",
    "\"\\ud83d\\ude00\"",
    "\"\u{e9} tab\\t\"",
    "\"\\/\"",
];

/// Whitespace between tokens, as pretty printers and humans write it.
fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["", "", " ", "\n  ", "\n\t", "\r\n    "][..])
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(&NAMES[..]).prop_map(|n| format!("\"{n}\""))
}

/// Any JSON value as text, with varied whitespace and number spellings.
pub(crate) fn raw_value() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(&LEAVES[..]).prop_map(str::to_owned);
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (prop::collection::vec((ws(), inner.clone()), 0..4), ws()).prop_map(|(items, end)| {
                let body: Vec<String> = items.into_iter().map(|(w, v)| format!("{w}{v}")).collect();
                format!("[{}{end}]", body.join(","))
            }),
            raw_object(inner),
        ]
    })
}

/// A JSON object as text whose values come from `value`.
pub(crate) fn raw_object(value: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (
        prop::collection::vec((ws(), name(), ws(), value), 0..5),
        ws(),
    )
        .prop_map(|(fields, end)| {
            let body: Vec<String> = fields
                .into_iter()
                .map(|(w1, n, w2, v)| format!("{w1}{n}{w2}:{w2}{v}"))
                .collect();
            format!("{{{}{end}}}", body.join(","))
        })
}

/// An entry's text: random fields, maybe a `sessionId` and an `updatedAt` of any type.
pub(crate) fn entry_text() -> impl Strategy<Value = String> {
    let session = prop_oneof![
        2 => Just(None),
        4 => prop::sample::select(&SESSIONS[..]).prop_map(|s| Some(format!("\"{s}\""))),
        1 => Just(Some("17".to_string())),
    ];
    let updated = prop_oneof![
        2 => Just(None),
        4 => (0i64..10).prop_map(|t| Some(t.to_string())),
        1 => Just(Some("1.0".to_string())),
        1 => Just(Some("\"yesterday\"".to_string())),
    ];
    (raw_object(raw_value()), session, updated, ws()).prop_map(|(obj, session, updated, w)| {
        let mut extra = String::new();
        if let Some(s) = session {
            extra.push_str(&format!(",{w}\"sessionId\":{w}{s}"));
        }
        if let Some(u) = updated {
            extra.push_str(&format!(",{w}\"updatedAt\": {u}"));
        }
        // Put the indexed fields first, then the random ones.
        let body = obj.trim_start_matches('{');
        if body.trim_start().starts_with('}') {
            format!("{{\"n\":1{extra}{body}")
        } else {
            format!("{{\"n\":1{extra},{body}")
        }
    })
}

pub(crate) fn entry() -> impl Strategy<Value = Entry> {
    entry_text().prop_map(|t| Entry::parse(&t).unwrap())
}

/// A patch's text: values are often `null` or objects, so merging and removal get exercised.
pub(crate) fn patch_text() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        2 => Just("null".to_string()),
        3 => raw_value(),
        2 => raw_object(prop_oneof![Just("null".to_string()), raw_value()]),
    ];
    let session = prop_oneof![
        3 => Just(String::new()),
        1 => prop::sample::select(&SESSIONS[..]).prop_map(|s| format!(",\"sessionId\":\"{s}\"")),
        1 => Just(",\"sessionId\":null".to_string()),
    ];
    (raw_object(value), session, 0i64..10).prop_map(|(obj, session, at)| {
        let body = obj.trim_start_matches('{');
        let sep = if body.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        format!("{{\"updatedAt\":{at}{session}{sep}{body}")
    })
}

pub(crate) fn patch() -> impl Strategy<Value = Patch> {
    patch_text().prop_map(|t| Patch::parse(&t).unwrap())
}

pub(crate) fn writer() -> impl Strategy<Value = WriterId> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(0x9f1c2a7be0d34c55),
        any::<u64>()
    ]
    .prop_map(WriterId::new)
}

/// A session key: usually one of a few, sometimes anything (newlines, quotes, unicode).
pub(crate) fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(&KEYS[..]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

pub(crate) fn record() -> impl Strategy<Value = Record> {
    let reason =
        prop::sample::select(&[EvictReason::Cap, EvictReason::Prune, EvictReason::Disk][..]);
    (
        any::<u64>(),
        writer(),
        key(),
        0..4u8,
        entry(),
        patch(),
        reason,
    )
        .prop_map(
            |(seq, writer, key, which, entry, patch, reason)| match which {
                0 => Record::upsert(seq, writer, key, &entry),
                1 => Record::patch(seq, writer, key, patch),
                2 => Record::delete(seq, writer, key),
                _ => Record::evict(seq, writer, key, reason),
            },
        )
}

/// Records as one writer appends them: seq 1, 2, 3, ...
pub(crate) fn journal_records(max: usize) -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(record(), 0..max).prop_map(|records| {
        let writer = WriterId::new(7);
        records
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.seq = i as u64 + 1;
                r.writer = writer;
                r
            })
            .collect()
    })
}
