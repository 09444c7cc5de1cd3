//! JSON objects as ordered lists of raw field values: parsing, canonical emission, minifying and
//! RFC 7396 merging, all without re-serialising a value nobody touched.
//!
//! An object's *canonical compact form* is `{"k":<raw>,...}`: each key as serde_json writes a
//! string, no whitespace between the tokens of this level, each value's bytes as they were read.
//! Duplicate keys are resolved as JavaScript's `JSON.parse` does (the last value wins, at the
//! position of the first), so the form is the same whichever program reads the object.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The fields of one JSON object, in order, borrowed from its text.
pub(crate) type Fields<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// A key that borrows from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((key, value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
            out.push((key.0, value));
        }
        Ok(out)
    }
}

/// What [`parse_object`] found.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// A JSON object and its fields (duplicates resolved).
    Object(Fields<'a>),
    /// Valid JSON, but not an object; the byte offset of the value in the text.
    NotObject(usize),
}

/// Parses `text` as one JSON value and, if it is an object, returns its fields in order with
/// duplicate keys resolved.
pub(crate) fn parse_object(text: &str) -> Result<Parsed<'_>, serde_json::Error> {
    let raw: &RawValue = serde_json::from_str(text)?;
    let trimmed = raw.get().trim_start();
    if !trimmed.starts_with('{') {
        return Ok(Parsed::NotObject(offset_in(text, trimmed)));
    }
    let mut de = serde_json::Deserializer::from_str(trimmed);
    let fields = de.deserialize_map(FieldsVisitor)?;
    Ok(Parsed::Object(dedupe(fields)))
}

/// The fields of a value already known to be valid JSON; `None` if it is not an object.
pub(crate) fn object_fields(raw: &str) -> Option<Fields<'_>> {
    match parse_object(raw) {
        Ok(Parsed::Object(fields)) => Some(fields),
        _ => None,
    }
}

/// The byte offset of `inner` (a subslice of `outer`) within `outer`.
pub(crate) fn offset_in(outer: &str, inner: &str) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// Resolves duplicate keys as `JSON.parse` does: the last value, at the first position.
fn dedupe<V: Copy>(mut fields: Vec<(Cow<'_, str>, V)>) -> Vec<(Cow<'_, str>, V)> {
    if fields.len() < 2 {
        return fields;
    }
    let mut order: Vec<usize> = (0..fields.len()).collect();
    order.sort_by(|&a, &b| fields[a].0.cmp(&fields[b].0).then(a.cmp(&b)));
    if !order.windows(2).any(|w| fields[w[0]].0 == fields[w[1]].0) {
        return fields;
    }
    // Rare: move each key's last value to its first slot, then drop the later slots.
    let mut keep = vec![true; fields.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && fields[order[j + 1]].0 == fields[order[i]].0 {
            j += 1;
        }
        if j > i {
            let (first, last) = (order[i], order[j]);
            fields[first].1 = fields[last].1;
            for &later in &order[i + 1..=j] {
                keep[later] = false;
            }
        }
        i = j + 1;
    }
    let mut index = 0;
    fields.retain(|_| {
        index += 1;
        keep[index - 1]
    });
    fields
}

/// Appends `s` as a JSON string.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    let plain = !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    if plain {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // serde_json cannot fail to serialise a string.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// The canonical compact form of an object with these fields.
pub(crate) fn emit_object<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (key, value) in fields {
        if out.len() > 1 {
            out.push(',');
        }
        push_json_string(&mut out, key);
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    out
}

/// `text` with every JSON whitespace byte outside strings removed. The value is unchanged;
/// a valid JSON text comes out on one line, because a string cannot hold a raw newline.
pub(crate) fn minify(text: &str) -> Cow<'_, str> {
    if !needs_minify(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_minify(text: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return true;
        }
    }
    false
}

/// Whether a raw value (valid JSON, no leading whitespace) is `null`.
pub(crate) fn is_null(raw: &str) -> bool {
    raw.trim_start().starts_with('n')
}

/// Whether a raw value (valid JSON) is an object.
pub(crate) fn is_object(raw: &str) -> bool {
    raw.trim_start().starts_with('{')
}

/// The fields of one JSON object, in order, as spans of its text (duplicates resolved).
type Spans<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// The fields of every object in a valid JSON text, by the byte offset of its `{`, found in
/// one pass over the text.
///
/// A merge descends into every object its patch nests. Parsing each of them again at every
/// level above it would cost the depth times the text's length: a patch nested some 30,000
/// objects deep (200 KB) kept a writer thread busy for minutes.
fn objects_in(text: &str) -> HashMap<usize, Spans<'_>> {
    enum Frame<'a> {
        Object {
            at: usize,
            fields: Spans<'a>,
            /// The field being read: its key, and where its value starts.
            pending: Option<(Cow<'a, str>, usize)>,
        },
        Array,
    }
    #[cfg(test)]
    tests::SCANNED.with(|n| n.set(n.get() + text.len()));
    let bytes = text.as_bytes();
    let mut found = HashMap::new();
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i);
                if let Some(Frame::Object { pending, .. }) = stack.last_mut()
                    && pending.is_none()
                {
                    // A key; its value starts after the colon.
                    let colon = skip_whitespace(bytes, end);
                    let start = skip_whitespace(bytes, colon + 1);
                    *pending = Some((key_of(text.get(i..end).unwrap_or_default()), start));
                    i = start;
                } else {
                    i = end;
                }
                continue;
            }
            b'{' => stack.push(Frame::Object {
                at: i,
                fields: Vec::new(),
                pending: None,
            }),
            b'[' => stack.push(Frame::Array),
            b',' | b'}' => {
                if let Some(Frame::Object {
                    fields, pending, ..
                }) = stack.last_mut()
                    && let Some((key, start)) = pending.take()
                {
                    let value = text.get(start..i).unwrap_or_default();
                    fields.push((key, value.trim_end_matches([' ', '\t', '\n', '\r'])));
                }
                if bytes[i] == b'}'
                    && let Some(Frame::Object { at, fields, .. }) = stack.pop()
                {
                    found.insert(at, dedupe(fields));
                }
            }
            b']' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Where the string starting at `bytes[start]` (a `"`) ends: just past its closing quote.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A key's text, given the JSON string (quotes included); borrowed when it has no escape.
fn key_of(quoted: &str) -> Cow<'_, str> {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default();
    if inner.contains('\\') {
        serde_json::from_str::<String>(quoted).map_or(Cow::Borrowed(inner), Cow::Owned)
    } else {
        Cow::Borrowed(inner)
    }
}

/// The fields of the object `value` (a span of `text`, no leading whitespace), taken out of
/// `objects`, the index of `text`; none if it is not an object.
fn take_fields<'a>(
    objects: &mut HashMap<usize, Spans<'a>>,
    text: &'a str,
    value: &'a str,
) -> Spans<'a> {
    if !is_object(value) {
        return Vec::new();
    }
    objects
        .remove(&offset_in(text, value))
        // Every object of a valid text is in its index; parsing is only a safety net.
        .or_else(|| {
            #[cfg(test)]
            tests::SCANNED.with(|n| n.set(n.get() + value.len()));
            object_fields(value)
                .map(|fields| fields.into_iter().map(|(k, v)| (k, v.get())).collect())
        })
        .unwrap_or_default()
}

/// Merges the object `patch` (a valid JSON object's text) into `target` (RFC 7396) and
/// appends the result, in canonical compact form, to `out`.
///
/// `target` is the existing value, if any; anything but an object counts as `{}`. Fields the
/// patch does not name keep their place and bytes. Fields it names are removed (`null`), merged
/// (an object, recursively) or replaced (anything else) and move to the end in the patch's
/// order. Moving them is what makes replaying a journal over a state that already contains it
/// byte-for-byte idempotent: the order after a sequence of patches depends only on which fields
/// the sequence touched last, not on the order the fields had before.
///
/// Each text is read once ([`objects_in`]), and each level looks fields up by key in hash
/// tables, so the cost is linear in the texts' lengths however deep or wide they are. The
/// nested objects are walked with a stack on the heap, not by recursion: serde_json reads a
/// raw value of any depth, and a patch nested a million objects deep (a caller's, or one line
/// of a crafted journal) would otherwise overflow the thread's stack and abort the process at
/// every open.
pub(crate) fn merge_into(out: &mut String, target: Option<&str>, patch: &str) {
    let target = target.unwrap_or_default().trim_start();
    let patch = patch.trim_start();
    let mut target_objects = objects_in(target);
    let mut patch_objects = objects_in(patch);
    let top = open_level(
        out,
        take_fields(&mut target_objects, target, target),
        take_fields(&mut patch_objects, patch, patch),
    );
    let mut stack = vec![top];
    while let Some(level) = stack.last_mut() {
        let Some(&(ref key, value)) = level.patch.get(level.next) else {
            out.push('}');
            stack.pop();
            continue;
        };
        let existing = level.existing.get(level.next).copied().flatten();
        level.next += 1;
        if is_null(value) {
            continue;
        }
        if !level.first {
            out.push(',');
        }
        level.first = false;
        push_json_string(out, key);
        out.push(':');
        if is_object(value) {
            let existing = existing.map_or_else(Vec::new, |existing| {
                take_fields(&mut target_objects, target, existing)
            });
            let nested = take_fields(&mut patch_objects, patch, value);
            let level = open_level(out, existing, nested);
            stack.push(level);
        } else {
            out.push_str(value);
        }
    }
}

/// One object of a merge in progress: its patch's fields, the target's value of each of them
/// (if any), the next patch field to write, and whether nothing is written inside its braces
/// yet.
struct Level<'a> {
    patch: Spans<'a>,
    existing: Vec<Option<&'a str>>,
    next: usize,
    first: bool,
}

/// Opens an object of a merge: writes `{` and the target's fields the patch does not name.
fn open_level<'a>(out: &mut String, target: Spans<'a>, patch: Spans<'a>) -> Level<'a> {
    let named: HashSet<&str> = patch.iter().map(|(k, _)| k.as_ref()).collect();
    let mut existing: HashMap<&str, &'a str> = HashMap::new();
    out.push('{');
    let mut first = true;
    for (key, value) in &target {
        if named.contains(key.as_ref()) {
            existing.insert(key.as_ref(), value);
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_json_string(out, key);
        out.push(':');
        out.push_str(value);
    }
    let existing = patch
        .iter()
        .map(|(k, _)| existing.get(k.as_ref()).copied())
        .collect();
    Level {
        patch,
        existing,
        next: 0,
        first,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use proptest::prelude::*;

    use super::*;

    thread_local! {
        /// Bytes of JSON text the merges on this thread read to find fields.
        pub(super) static SCANNED: Cell<usize> = const { Cell::new(0) };
    }

    fn keys<'a>(fields: &'a Fields<'a>) -> Vec<(&'a str, &'a str)> {
        fields.iter().map(|(k, v)| (k.as_ref(), v.get())).collect()
    }

    #[test]
    fn fields_keep_order_and_raw_bytes() {
        let text = "{ \"b\" : 1.0 , \"a\": {\n  \"x\": 1e3\n}, \"\\u0063\": \"\\u00e9\" }";
        let Ok(Parsed::Object(fields)) = parse_object(text) else {
            panic!("not an object: {text}");
        };
        assert_eq!(
            keys(&fields),
            vec![
                ("b", "1.0"),
                ("a", "{\n  \"x\": 1e3\n}"),
                ("c", "\"\\u00e9\"")
            ]
        );
    }

    #[test]
    fn duplicates_resolve_like_json_parse() {
        let Ok(Parsed::Object(fields)) = parse_object(r#"{"a":1,"b":2,"a":3,"c":4,"b":5,"a":6}"#)
        else {
            panic!("not an object");
        };
        assert_eq!(keys(&fields), vec![("a", "6"), ("b", "5"), ("c", "4")]);
    }

    #[test]
    fn non_objects_report_their_offset() {
        assert!(matches!(parse_object("  [1]"), Ok(Parsed::NotObject(2))));
        assert!(matches!(parse_object("null"), Ok(Parsed::NotObject(0))));
        assert!(parse_object("{").is_err());
        assert!(parse_object("{} x").is_err());
    }

    #[test]
    fn minify_leaves_strings_alone() {
        let text = "{ \"a b\" : [ 1 ,\n 2 ] , \"c\":\"x\\\" \\\\ y \" }";
        assert_eq!(minify(text), "{\"a b\":[1,2],\"c\":\"x\\\" \\\\ y \"}");
        assert!(matches!(minify("{\"a\":\" \"}"), Cow::Borrowed(_)));
    }

    #[test]
    fn merge_moves_touched_fields_to_the_end() {
        let patch = r#"{"a":{"y":2,"z":null},"d":null,"e":[null]}"#;
        let mut out = String::new();
        merge_into(
            &mut out,
            Some("{\"a\":{\"x\":1,\"z\":0},\"b\": 2.50,\"d\":4}"),
            patch,
        );
        assert_eq!(out, r#"{"b":2.50,"a":{"x":1,"y":2},"e":[null]}"#);
    }

    /// A patch nested deeper than a thread's stack allows recursion for merges into a target
    /// nested as deep, field by field. The merge runs on a thread with a 64 KiB stack; a
    /// recursive merge overflows it and aborts the test.
    #[test]
    fn a_deep_patch_merges_on_a_small_stack() {
        const DEPTH: usize = 1_000;
        let nest = |leaf: &str, extra: &str| {
            let mut text = "{\"a\":".repeat(DEPTH);
            text.push_str(leaf);
            text.push_str(&format!("{extra}}}").repeat(DEPTH));
            text
        };
        let target = nest("1", ",\"k\":0");
        let patch = nest("2", "");
        let merge = move || {
            let mut out = String::new();
            merge_into(&mut out, Some(&target), &patch);
            out
        };
        let out = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(merge)
            .expect("a thread")
            .join()
            .expect("the merge");
        // Every level keeps its `k` before the patched `a`, and the innermost value is the
        // patch's.
        let mut want = "{\"k\":0,\"a\":".repeat(DEPTH);
        want.push('2');
        want.push_str(&"}".repeat(DEPTH));
        assert!(out == want, "the merge differs from the expected text");
    }

    /// A merge reads each text once, however deep the patch goes into the target (it read the
    /// rest of both texts again at every level: 20,000 levels took minutes), and however many
    /// fields they have at one level (each patch field was looked for among all the target's).
    #[test]
    fn a_merge_reads_each_text_once() {
        const DEPTH: usize = 20_000;
        let mut target = "{\"k\":0,\"a\":".repeat(DEPTH);
        target.push('1');
        target.push_str(&"}".repeat(DEPTH));
        let mut patch = "{\"a\":".repeat(DEPTH);
        patch.push('2');
        patch.push_str(&"}".repeat(DEPTH));
        let wide = |n: usize, value: &str| {
            let fields = (0..n)
                .map(|i| format!("\"f{i}\":{value}"))
                .collect::<Vec<_>>();
            format!("{{{}}}", fields.join(","))
        };
        let cases = [
            ("deep", target, patch),
            (
                "wide",
                wide(20_000, "{\"x\":1}"),
                wide(20_000, "{\"y\":[2]}"),
            ),
        ];
        for (what, target, patch) in cases {
            SCANNED.with(|n| n.set(0));
            let mut out = String::new();
            merge_into(&mut out, Some(&target), &patch);
            assert_eq!(
                SCANNED.with(Cell::get),
                target.len() + patch.len(),
                "{what}"
            );
            let want = if what == "deep" {
                format!("{}2{}", "{\"k\":0,\"a\":".repeat(DEPTH), "}".repeat(DEPTH))
            } else {
                wide(20_000, "{\"x\":1,\"y\":[2]}")
            };
            assert!(
                out == want,
                "{what}: the merge differs from the expected text"
            );
        }
    }

    /// Spellings of keys and strings: plain, with escapes, and non-ASCII.
    const WORDS: [&str; 8] = [
        "a",
        "b",
        "sessionId",
        "é",
        "\u{1F600}",
        "q\"",
        "back\\slash",
        "nl\n",
    ];

    /// `s` as a JSON string with every character written as a `\u` escape.
    fn unicode_escaped(s: &str) -> String {
        let mut out = String::from("\"");
        for unit in s.encode_utf16() {
            out.push_str(&format!("\\u{unit:04x}"));
        }
        out.push('"');
        out
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec!["", "", " ", "\n  ", "\t", "\r\n"])
    }

    /// A JSON string literal and the string it means.
    fn string_literal() -> impl Strategy<Value = (String, String)> {
        (proptest::sample::select(WORDS.to_vec()), any::<bool>()).prop_map(|(s, escaped)| {
            let text = if escaped {
                unicode_escaped(s)
            } else {
                serde_json::to_string(s).unwrap()
            };
            (text, s.to_owned())
        })
    }

    /// One JSON value written twice: with whitespace between its tokens (`spaced`), and the
    /// same tokens without it (`tight`), which is what minifying must give.
    #[derive(Clone, Debug)]
    struct Text {
        spaced: String,
        tight: String,
    }

    impl Text {
        fn token(token: &str) -> Text {
            Text {
                spaced: token.to_owned(),
                tight: token.to_owned(),
            }
        }

        /// Joins `parts` with `sep` between them, inside `open` and `close`.
        fn join(open: &str, parts: Vec<Text>, sep: &str, close: &str) -> Text {
            let (spaced, tight): (Vec<String>, Vec<String>) =
                parts.into_iter().map(|t| (t.spaced, t.tight)).unzip();
            Text {
                spaced: format!("{open}{}{close}", spaced.join(sep)),
                tight: format!("{open}{}{close}", tight.join(sep)),
            }
        }

        /// `self` with whitespace around it in the spaced form.
        fn padded(self, before: &str, after: &str) -> Text {
            Text {
                spaced: format!("{before}{}{after}", self.spaced),
                tight: self.tight,
            }
        }
    }

    /// One JSON value, with whitespace between its tokens and duplicate keys.
    fn value_text() -> impl Strategy<Value = Text> {
        let leaf = prop_oneof![
            proptest::sample::select(vec![
                "null", "true", "false", "0", "-12", "1.50", "1e3", "2.5E-3"
            ])
            .prop_map(Text::token),
            string_literal().prop_map(|(text, _)| Text::token(&text)),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec((ws(), inner.clone(), ws()), 0..4).prop_map(|items| {
                    let items = items.into_iter().map(|(a, v, b)| v.padded(a, b)).collect();
                    Text::join("[", items, ",", "]")
                }),
                object_text(inner).prop_map(|(text, _)| text),
            ]
        })
    }

    /// A JSON object, and its keys as written (decoded), duplicates included.
    fn object_text(
        value: impl Strategy<Value = Text>,
    ) -> impl Strategy<Value = (Text, Vec<String>)> {
        proptest::collection::vec((ws(), string_literal(), ws(), ws(), value, ws()), 0..6).prop_map(
            |fields| {
                let keys = fields.iter().map(|(_, (_, key), ..)| key.clone()).collect();
                let parts = fields
                    .into_iter()
                    .map(|(a, (k, _), b, c, v, d)| {
                        Text::join(
                            "",
                            vec![Text::token(&k).padded(a, b), v.padded(c, d)],
                            ":",
                            "",
                        )
                    })
                    .collect();
                (Text::join("{", parts, ",", "}"), keys)
            },
        )
    }

    proptest! {
        /// An object's fields come out once per key, in the order each key first appears,
        /// each with the bytes of its last value, as `JSON.parse` resolves duplicates; a
        /// value that is not an object is reported at its first byte.
        #[test]
        fn parse_object_resolves_fields_like_json_parse(
            lead in ws(),
            (text, keys) in object_text(value_text()),
            other in value_text(),
            trail in ws(),
            object in any::<bool>(),
        ) {
            let (text, other) = (text.spaced, other.spaced);
            let whole = format!("{lead}{}{trail}", if object { &text } else { &other });
            let expected: serde_json::Value = serde_json::from_str(&whole).unwrap();
            match parse_object(&whole).unwrap() {
                Parsed::Object(fields) => {
                    prop_assert!(object || other.starts_with('{'), "{whole}");
                    let mut order: Vec<String> = Vec::new();
                    if object {
                        for key in keys {
                            if !order.contains(&key) {
                                order.push(key);
                            }
                        }
                        let got: Vec<String> = fields.iter().map(|(k, _)| k.to_string()).collect();
                        prop_assert_eq!(got, order);
                    }
                    let map = expected.as_object().unwrap();
                    prop_assert_eq!(fields.len(), map.len());
                    for (key, raw) in &fields {
                        let value: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
                        prop_assert_eq!(Some(&value), map.get(key.as_ref()), "{}", key);
                        // The raw value is a slice of the input, bytes unchanged.
                        prop_assert!(whole.contains(raw.get()));
                    }
                }
                Parsed::NotObject(at) => {
                    prop_assert!(!object && !other.starts_with('{'), "{whole}");
                    prop_assert_eq!(at, lead.len());
                }
            }
        }

        /// Minifying removes exactly the whitespace between tokens, keeps every string's bytes
        /// (spaces and escapes included), and copies nothing when there is none to remove.
        #[test]
        fn minify_removes_only_whitespace_between_tokens(text in value_text()) {
            let out = minify(&text.spaced);
            prop_assert_eq!(&out, &text.tight);
            prop_assert_eq!(matches!(out, Cow::Borrowed(_)), text.spaced == text.tight);
            prop_assert!(matches!(minify(&out), Cow::Borrowed(_)));
        }

        /// The canonical form of parsed fields parses back to the same fields, byte for byte,
        /// and to the same value as the input.
        #[test]
        fn emitted_objects_parse_back_to_their_fields((text, _) in object_text(value_text())) {
            let text = text.spaced;
            let Parsed::Object(fields) = parse_object(&text).unwrap() else {
                panic!("not an object: {text}");
            };
            let emitted = emit_object(fields.iter().map(|(k, v)| (k.as_ref(), v.get())));
            let Parsed::Object(again) = parse_object(&emitted).unwrap() else {
                panic!("not an object: {emitted}");
            };
            prop_assert_eq!(keys(&again), keys(&fields));
            let before: serde_json::Value = serde_json::from_str(&text).unwrap();
            let after: serde_json::Value = serde_json::from_str(&emitted).unwrap();
            prop_assert_eq!(after, before);
        }

        /// Any string written as a JSON string reads back as itself.
        #[test]
        fn json_strings_read_back(s in any::<String>(), prefix in "[a-z{]{0,3}") {
            let mut out = prefix.clone();
            push_json_string(&mut out, &s);
            let back: String = serde_json::from_str(&out[prefix.len()..]).unwrap();
            prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn strings_with_specials_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\n");
        assert_eq!(out, r#""a\"b\n""#);
    }
}
