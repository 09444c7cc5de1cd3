//! Session entries that keep unknown fields byte for byte, merge patches, and the `updatedAt`
//! rule.

use std::borrow::Cow;
use std::fmt;

use serde_json::value::RawValue;

use crate::error::{Error, Input, Result};
use crate::raw::{self, Parsed};

/// The field holding the session's id (the transcript is `<sessionId>.jsonl`).
pub const SESSION_ID: &str = "sessionId";
/// The field holding the time of the last activity, in milliseconds since the Unix epoch.
pub const UPDATED_AT: &str = "updatedAt";
/// The field holding the path of the session's transcript, when the entry names it (OpenClaw
/// writes it as an absolute path to `<sessionId>.jsonl`, or to a topic's file).
pub const SESSION_FILE: &str = "sessionFile";

/// One session entry: a JSON object whose fields survive byte for byte.
///
/// OpenClaw's entries have about 150 optional fields, and other programs add their own; an
/// entry keeps every one of them. It is stored as one string, the object's *canonical compact
/// form*: `{"key":<value>,...}` with no whitespace between the fields, where each value is the
/// exact bytes it was read with (`1.0` stays `1.0`, `1e3` stays `1e3`, `"\u00e9"` stays
/// escaped, a nested object keeps its indentation). Only field names are re-encoded (to the
/// same strings). If a name appears twice, the last value wins at the position of the first,
/// as with JavaScript's `JSON.parse`.
///
/// Two fields are also parsed out and indexed:
///
/// - [`session_id`](Entry::session_id): `sessionId` if it is a string;
/// - [`updated_at`](Entry::updated_at): `updatedAt` if it is a number that is a whole number of
///   milliseconds within `i64` (`1700000000000`, also `1.7e12`).
///
/// OpenClaw requires both, but older files may lack them. An entry without them, or with a
/// value of another type, is accepted and keeps the value's bytes; it is indexed as having none
/// (an entry without `updatedAt` counts as the oldest for caps, and is never pruned by age, as
/// in OpenClaw). Refusing it instead would quarantine a whole registry over one odd field.
/// Every patch applied through the journal sets a proper `updatedAt` (see [`Patch::resolve`]).
///
/// A third, `sessionFile`, is looked at once: when its file name is not a name of `sessionId`'s
/// transcript (see [`transcript_sessions`]), the registry counts the entry as referencing that
/// file too, so that maintenance never takes it for an orphan.
///
/// ```
/// use sessionkit_session_store::{Entry, Patch};
/// # fn main() -> Result<(), sessionkit_session_store::Error> {
/// let entry = Entry::parse(r#"{"sessionId":"s1","updatedAt":1000,"ratio":1.0}"#)?;
/// assert_eq!(entry.session_id(), Some("s1"));
/// assert_eq!(entry.updated_at(), Some(1000));
///
/// let patched = entry.merge_patch(&Patch::parse(r#"{"label":"build","ratio":null}"#)?);
/// assert_eq!(patched.as_str(), r#"{"sessionId":"s1","updatedAt":1000,"label":"build"}"#);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    text: Box<str>,
    session_id: SessionId,
    /// `updatedAt`, meaningful only if `has_updated_at` (0 otherwise): an `Option<i64>` and the
    /// flag below would make every entry a word larger.
    updated_at: i64,
    has_updated_at: bool,
    /// Whether `sessionFile` names a transcript that `sessionId` does not: then the registry
    /// counts a reference to that file by its name (see [`Entry::other_transcripts`]). Known
    /// from the one parse that finds the indexed fields, so that the common entry, whose file
    /// is its session's, is not parsed again each time it is indexed.
    other_file: bool,
}

/// Where an entry's `sessionId` is: in most entries a slice of its text, which costs no
/// allocation of its own (a registry holds 100,000 entries and more).
#[derive(Clone, PartialEq, Eq, Hash)]
enum SessionId {
    None,
    /// The bytes `at..at + len` of the text: the string's contents, which have no escapes.
    Span {
        at: u32,
        len: u32,
    },
    /// The decoded string, for a value written with escapes. Boxed twice: a thin pointer keeps
    /// the enum, and so every entry, two words smaller than a `Box<str>` would.
    Decoded(Box<Box<str>>),
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Entry").field(&&*self.text).finish()
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Default for Entry {
    fn default() -> Self {
        Entry::empty()
    }
}

impl Entry {
    /// The empty entry, `{}`.
    pub fn empty() -> Entry {
        Entry {
            text: "{}".into(),
            session_id: SessionId::None,
            updated_at: 0,
            has_updated_at: false,
            other_file: false,
        }
    }

    /// Parses an entry from JSON text.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `text` is not one valid JSON value, or is not an object.
    pub fn parse(text: &str) -> Result<Entry> {
        match raw::parse_object(text) {
            Ok(Parsed::Object(fields)) => Ok(Entry::from_fields(&fields)),
            Ok(Parsed::NotObject(_)) => {
                Err(Error::invalid(Input::Entry, "it is not a JSON object"))
            }
            Err(source) => Err(Error::Invalid {
                input: Input::Entry,
                reason: "it is not valid JSON",
                source: Some(source),
            }),
        }
    }

    /// Builds an entry from a JSON value (numbers are written as serde_json writes them).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `value` is not an object.
    pub fn from_value(value: &serde_json::Value) -> Result<Entry> {
        if !value.is_object() {
            return Err(Error::invalid(Input::Entry, "it is not a JSON object"));
        }
        Entry::parse(&value.to_string())
    }

    /// Builds the entry from parsed fields, in canonical compact form.
    pub(crate) fn from_fields(fields: &raw::Fields<'_>) -> Entry {
        let text = raw::emit_object(fields.iter().map(|(k, v)| (k.as_ref(), v.get())));
        Entry::from_canonical(text)
    }

    /// Wraps text already in canonical compact form, and parses out the indexed fields.
    fn from_canonical(text: String) -> Entry {
        let mut entry = Entry {
            text: text.into_boxed_str(),
            session_id: SessionId::None,
            updated_at: 0,
            has_updated_at: false,
            other_file: false,
        };
        // One pass over the fields finds all three; the canonical form has no duplicate names.
        let mut file = None;
        for (name, raw) in raw::object_fields(&entry.text).unwrap_or_default() {
            match &*name {
                SESSION_ID => entry.session_id = locate_session_id(&entry.text, raw.get()),
                UPDATED_AT => {
                    if let Some(ms) = millis(raw.get()) {
                        entry.updated_at = ms;
                        entry.has_updated_at = true;
                    }
                }
                SESSION_FILE => file = Some(raw),
                _ => {}
            }
        }
        // Every update of an entry builds a new one, so the common case allocates nothing.
        let other_file = file
            .and_then(json_str)
            .is_some_and(|file| entry.others(&file).next().is_some());
        entry.other_file = other_file;
        entry
    }

    /// The transcript names of the path `file` that are not names of the entry's own
    /// session's transcripts.
    fn others<'f>(&self, file: &'f str) -> impl Iterator<Item = &'f str> {
        let own = self.session_id();
        transcript_names(file)
            .filter(move |name| !transcript_sessions(name).any(|s| Some(s) == own))
    }

    /// The entry as JSON text, in canonical compact form.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The length of [`as_str`](Entry::as_str) in bytes.
    pub fn len_bytes(&self) -> usize {
        self.text.len()
    }

    /// `sessionId`, if the entry has one and it is a string.
    pub fn session_id(&self) -> Option<&str> {
        match &self.session_id {
            SessionId::None => None,
            SessionId::Span { at, len } => {
                let at = *at as usize;
                self.text.get(at..at + *len as usize)
            }
            SessionId::Decoded(id) => Some(id),
        }
    }

    /// `updatedAt` in milliseconds since the Unix epoch, if the entry has one and it is a whole
    /// number within `i64`.
    pub fn updated_at(&self) -> Option<i64> {
        self.has_updated_at.then_some(self.updated_at)
    }

    /// `sessionFile`, if the entry has one and it is a non-empty string.
    pub fn session_file(&self) -> Option<String> {
        self.get(SESSION_FILE)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .filter(|file| !file.is_empty())
    }

    /// The file names of the transcript `sessionFile` names that are not among the names
    /// [`transcript_sessions`] reads as `sessionId`'s: transcripts the entry references besides
    /// its session's. Empty if there is no such file, or if its name is not a transcript's
    /// (`<name>.jsonl`). Mostly one name; two when the path reads differently with `\` as a
    /// separator (a path written on Windows, read here) and without.
    ///
    /// Only the file name counts, whatever directory the path names: the store may be reached
    /// through another path than the one written. A name that matches a file elsewhere keeps
    /// the file here while the entry lasts.
    pub(crate) fn other_transcripts(&self) -> Vec<String> {
        if !self.other_file {
            return Vec::new();
        }
        self.get(SESSION_FILE)
            .and_then(json_str)
            .map(|file| self.others(&file).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The raw JSON text of one field's value, exactly as it was read.
    pub fn get(&self, field: &str) -> Option<&RawValue> {
        self.fields()
            .into_iter()
            .find(|(name, _)| name == field)
            .map(|(_, value)| value)
    }

    /// Every field in order, with its raw value.
    pub fn fields(&self) -> Vec<(Cow<'_, str>, &RawValue)> {
        raw::object_fields(&self.text).unwrap_or_default()
    }

    /// The entry as a [`serde_json::Value`] (numbers are parsed; field order is not kept).
    /// An entry nested deeper than serde_json's limit of 128 levels gives `Value::Null`; its
    /// text ([`as_str`](Entry::as_str)) is whole either way.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_default()
    }

    /// Applies an RFC 7396 JSON Merge Patch and returns the result; `self` is unchanged.
    ///
    /// Fields the patch does not name keep their position and bytes. A field set to `null` is
    /// removed; a field set to an object is merged recursively (into `{}` if the field is
    /// missing or not an object); any other value replaces the field. The fields the patch
    /// names are written after the others, in the patch's order, so replaying a run of patches
    /// over an entry that already includes them changes nothing, byte for byte. (JSON object
    /// order carries no meaning; OpenClaw and every JSON reader see the same object.)
    ///
    /// `updatedAt` is not special here; see [`Patch::resolve`] for the rule the write path
    /// applies before it journals a patch.
    pub fn merge_patch(&self, patch: &Patch) -> Entry {
        let mut out = String::with_capacity(self.text.len() + patch.text.len());
        raw::merge_into(&mut out, Some(&self.text), &patch.text);
        Entry::from_canonical(out)
    }

    /// The entry with `updatedAt` set to `ms` (moved to the end, like any patched field).
    pub fn with_updated_at(&self, ms: i64) -> Entry {
        self.merge_patch(&Patch::updated_at_only(ms))
    }

    /// The entry as an upsert with `activity` writes it over `existing` (`None` for a new
    /// key): with [`Activity::Advance`], `updatedAt` set by [`resolve_updated_at`] from the
    /// existing entry's, this entry's and `now_ms`; with [`Activity::Preserve`], the existing
    /// entry's `updatedAt` if it has one, else as `Advance`.
    pub fn stamped(&self, existing: Option<&Entry>, now_ms: i64, activity: Activity) -> Entry {
        let existing_at = existing.and_then(Entry::updated_at);
        let at = match (activity, existing_at) {
            (Activity::Preserve, Some(at)) => at,
            _ => resolve_updated_at(existing_at, self.updated_at(), now_ms),
        };
        self.with_updated_at(at)
    }

    /// Returns the entry with `updatedAt` advanced by the rule in [`resolve_updated_at`].
    pub fn touched(&self, now_ms: i64) -> Entry {
        self.with_updated_at(resolve_updated_at(self.updated_at(), None, now_ms))
    }

    /// The entry with whitespace outside strings removed, as the journal stores it.
    pub(crate) fn minified(&self) -> Cow<'_, Entry> {
        match raw::minify(&self.text) {
            Cow::Borrowed(_) => Cow::Borrowed(self),
            // Minifying moves the `sessionId` within the text.
            Cow::Owned(text) => Cow::Owned(Entry::from_canonical(text)),
        }
    }
}

/// The contents of a raw JSON string, borrowed when it holds no escape; `None` if it is not a
/// string.
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

/// The last components of the path `file` that are transcripts' names: as this platform reads
/// the path, and after the last `/` or `\` (a path written on another platform), once if they
/// are the same.
fn transcript_names(file: &str) -> impl Iterator<Item = &str> {
    let native = std::path::Path::new(file)
        .file_name()
        .and_then(|name| name.to_str());
    let portable = file
        .rsplit(['/', '\\'])
        .next()
        .filter(|p| Some(*p) != native);
    native
        .into_iter()
        .chain(portable)
        .filter(|name| is_transcript_name(name))
}

/// The `sessionId`s a transcript's file name may belong to, longest first: OpenClaw names a
/// session's transcript `<sessionId>.jsonl` and a topic's `<sessionId>-topic-<thread>.jsonl`,
/// so a name containing `-topic-` reads both ways, at each place it occurs. Nothing for a name
/// that is not `<something>.jsonl` (archives such as `<file>.jsonl.deleted.<time>` included).
///
/// Maintenance counts a transcript as referenced while an entry's `sessionId` is any of these,
/// or its `sessionFile` names the file (see [`State::transcript_refs`](crate::State::transcript_refs)).
///
/// ```
/// use sessionkit_session_store::transcript_sessions;
/// let all = |name| transcript_sessions(name).collect::<Vec<_>>();
/// assert_eq!(all("s1.jsonl"), ["s1"]);
/// assert_eq!(all("s1-topic-42.jsonl"), ["s1-topic-42", "s1"]);
/// assert_eq!(all("a-topic-b-topic-c.jsonl"), ["a-topic-b-topic-c", "a-topic-b", "a"]);
/// assert_eq!(all("-topic-42.jsonl"), ["-topic-42"]);
/// assert!(all("s1.jsonl.deleted.2026-01-01T00-00-00.000Z").is_empty());
/// ```
pub fn transcript_sessions(name: &str) -> impl Iterator<Item = &str> {
    const TOPIC: &str = "-topic-";
    let stem = name.strip_suffix(".jsonl").unwrap_or_default();
    let whole = (!stem.is_empty()).then_some(stem);
    // Every occurrence, overlapping ones included (`a-topic-topic-b` is `a-topic`'s topic `b`).
    let topics = stem
        .char_indices()
        .rev()
        .filter(move |&(at, _)| at > 0 && stem[at..].starts_with(TOPIC))
        .map(move |(at, _)| &stem[..at]);
    whole.into_iter().chain(topics)
}

/// True if `name` is a transcript's file name, `<something>.jsonl`: one that
/// [`transcript_sessions`] reads as some session's.
///
/// ```
/// use sessionkit_session_store::is_transcript_name;
/// assert!(is_transcript_name("s1-topic-42.jsonl"));
/// assert!(!is_transcript_name(".jsonl"));
/// assert!(!is_transcript_name("s1.jsonl.lock"));
/// ```
pub fn is_transcript_name(name: &str) -> bool {
    transcript_sessions(name).next().is_some()
}

/// Where the `sessionId` whose raw JSON value is `value` (a slice of `text`) is, if it is a
/// string.
fn locate_session_id(text: &str, value: &str) -> SessionId {
    let Some(contents) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return SessionId::None;
    };
    let at = raw::offset_in(text, contents);
    let span = u32::try_from(at)
        .ok()
        .zip(u32::try_from(contents.len()).ok());
    match span {
        Some((at32, len))
            if !contents.contains('\\') && text.get(at..at + contents.len()) == Some(contents) =>
        {
            SessionId::Span { at: at32, len }
        }
        _ => serde_json::from_str::<String>(value).map_or(SessionId::None, |id| {
            SessionId::Decoded(Box::new(id.into_boxed_str()))
        }),
    }
}

/// Reads a raw JSON number as whole milliseconds: an integer within `i64`, or a float with no
/// fractional part within `i64` (JavaScript writes every number as a float).
fn millis(raw: &str) -> Option<i64> {
    let number: serde_json::Number = serde_json::from_str(raw).ok()?;
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    let f = number.as_f64()?;
    // 2^63 is exactly representable; anything at or past it does not fit.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// What a patch does to `updatedAt` ([`Patch::resolve`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Activity {
    /// The update is activity: `updatedAt` advances by [`resolve_updated_at`].
    #[default]
    Advance,
    /// The update is metadata (OpenClaw's "preserve activity" for inbound metadata and route
    /// updates): an existing `updatedAt` is left as it is. An entry without one still gets one,
    /// as by [`Activity::Advance`].
    Preserve,
}

/// The new `updatedAt` of an entry: the latest of the existing value, the patch's value and
/// `now_ms`, but never later than `now_ms` (OpenClaw's rule).
///
/// A time in the future (a clock that jumped back, a patch from a skewed machine) can therefore
/// never stick. As written the rule always yields `now_ms`; it is kept in this form, in one
/// place, so that a change to it (letting a patch back-date an entry, say) changes every
/// caller.
pub fn resolve_updated_at(existing: Option<i64>, patch: Option<i64>, now_ms: i64) -> i64 {
    let latest = existing
        .into_iter()
        .chain(patch)
        .fold(now_ms, std::cmp::max);
    latest.min(now_ms)
}

/// An RFC 7396 JSON Merge Patch for an entry: a JSON object whose fields replace, merge into or
/// (when `null`) remove the entry's fields. See [`Entry::merge_patch`].
///
/// A patch is stored in canonical compact form with all whitespace outside strings removed, so
/// it is written to the journal exactly as it is applied in memory. A patch that is not an
/// object would replace the whole entry with a non-object, so it is refused.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Patch {
    text: Box<str>,
}

impl fmt::Debug for Patch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Patch").field(&&*self.text).finish()
    }
}

impl fmt::Display for Patch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Default for Patch {
    fn default() -> Self {
        Patch::empty()
    }
}

impl Patch {
    /// The patch that changes nothing, `{}`.
    pub fn empty() -> Patch {
        Patch { text: "{}".into() }
    }

    /// Parses a patch from JSON text.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `text` is not one valid JSON value, or is not an object.
    pub fn parse(text: &str) -> Result<Patch> {
        match raw::parse_object(text) {
            Ok(Parsed::Object(fields)) => Ok(Patch::from_fields(&fields)),
            Ok(Parsed::NotObject(_)) => Err(Error::invalid(
                Input::Patch,
                "it is not a JSON object (an entry must stay an object)",
            )),
            Err(source) => Err(Error::Invalid {
                input: Input::Patch,
                reason: "it is not valid JSON",
                source: Some(source),
            }),
        }
    }

    /// Builds a patch from a JSON value.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `value` is not an object.
    pub fn from_value(value: &serde_json::Value) -> Result<Patch> {
        if !value.is_object() {
            return Err(Error::invalid(
                Input::Patch,
                "it is not a JSON object (an entry must stay an object)",
            ));
        }
        Patch::parse(&value.to_string())
    }

    pub(crate) fn from_fields(fields: &raw::Fields<'_>) -> Patch {
        let text = raw::emit_object(fields.iter().map(|(k, v)| (k.as_ref(), v.get())));
        Patch {
            text: raw::minify(&text).into_owned().into_boxed_str(),
        }
    }

    fn updated_at_only(ms: i64) -> Patch {
        Patch {
            text: format!("{{\"{UPDATED_AT}\":{ms}}}").into_boxed_str(),
        }
    }

    /// The patch as JSON text (one line, no whitespace outside strings).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The raw JSON text of one field's value in the patch.
    pub fn get(&self, field: &str) -> Option<&RawValue> {
        raw::object_fields(&self.text)
            .unwrap_or_default()
            .into_iter()
            .find(|(name, _)| name == field)
            .map(|(_, value)| value)
    }

    /// The patch's `updatedAt`, if it is a whole number of milliseconds.
    pub fn updated_at(&self) -> Option<i64> {
        self.get(UPDATED_AT).and_then(|raw| millis(raw.get()))
    }

    /// The patch as a [`serde_json::Value`]. A patch nested deeper than serde_json's limit of
    /// 128 levels gives `Value::Null`; its text ([`as_str`](Patch::as_str)) is whole either way.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_default()
    }

    /// The patch as the write path journals it: with `updatedAt` decided now, so that replaying
    /// the journal never reads the clock.
    ///
    /// With [`Activity::Advance`], `updatedAt` is set to
    /// [`resolve_updated_at`]`(existing, patch, now_ms)`. With [`Activity::Preserve`] and an
    /// existing entry that has an `updatedAt`, the patch's own `updatedAt` is dropped, so the
    /// entry's field keeps its bytes; otherwise as `Advance`. `existing` is the entry the patch
    /// will apply to (`None` if the key is new).
    pub fn resolve(&self, existing: Option<&Entry>, now_ms: i64, activity: Activity) -> Patch {
        let existing_at = existing.and_then(Entry::updated_at);
        let keep = activity == Activity::Preserve && existing_at.is_some();
        let fields = raw::object_fields(&self.text).unwrap_or_default();
        let others = fields.iter().filter(|(k, _)| k != UPDATED_AT);
        if keep {
            let text = raw::emit_object(others.map(|(k, v)| (k.as_ref(), v.get())));
            return Patch {
                text: text.into_boxed_str(),
            };
        }
        let at = resolve_updated_at(existing_at, self.updated_at(), now_ms).to_string();
        let text = raw::emit_object(
            others
                .map(|(k, v)| (k.as_ref(), v.get()))
                .chain([(UPDATED_AT, at.as_str())]),
        );
        Patch {
            text: text.into_boxed_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_accepts_whole_numbers_only() {
        assert_eq!(millis("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(millis("1.7e12"), Some(1_700_000_000_000));
        assert_eq!(millis("-5"), Some(-5));
        assert_eq!(millis("1.5"), None);
        assert_eq!(millis("1e30"), None);
        assert_eq!(millis("\"1\""), None);
        assert_eq!(millis("18446744073709551615"), None);
        assert_eq!(millis("-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn minified_keeps_the_index() {
        let entry = Entry::parse("{\"sessionId\":\"a\",\"x\":{ \"y\" : [1, 2] }}").unwrap();
        let min = entry.minified();
        assert_eq!(min.as_str(), r#"{"sessionId":"a","x":{"y":[1,2]}}"#);
        assert_eq!(min.session_id(), Some("a"));
        assert_eq!(min.to_value(), entry.to_value());
    }

    #[test]
    fn a_session_file_counts_only_when_its_session_does_not_name_it() {
        let other = |text: &str| Entry::parse(text).unwrap().other_transcripts();
        let none: Vec<String> = Vec::new();
        // The session's own file, or a topic of it, wherever the path puts it.
        assert_eq!(
            other(r#"{"sessionId":"s1","sessionFile":"/a/s1.jsonl"}"#),
            none
        );
        assert_eq!(
            other(r#"{"sessionId":"s1","sessionFile":"s1-topic-3.jsonl"}"#),
            none
        );
        // Another file: its name, without the directory.
        assert_eq!(
            other(r#"{"sessionId":"s1","sessionFile":"/a/b/x.jsonl"}"#),
            ["x.jsonl"]
        );
        assert_eq!(
            other(r#"{"sessionFile":"x\u002djsonl.jsonl"}"#),
            ["x-jsonl.jsonl"]
        );
        // A topic's file whose session is another.
        assert_eq!(
            other(r#"{"sessionId":"s1","sessionFile":"s2-topic-3.jsonl"}"#),
            ["s2-topic-3.jsonl"]
        );
        // A path written on Windows: read both ways where they differ.
        let windows = other(r#"{"sessionId":"s1","sessionFile":"C:\\x\\y.jsonl"}"#);
        if cfg!(windows) {
            assert_eq!(windows, ["y.jsonl"]);
        } else {
            assert_eq!(windows, ["C:\\x\\y.jsonl", "y.jsonl"]);
        }
        // Not a transcript's name, not a string, empty, or no file name at all.
        for text in [
            r#"{"sessionId":"s1","sessionFile":"/a/notes.txt"}"#,
            r#"{"sessionId":"s1","sessionFile":7}"#,
            r#"{"sessionId":"s1","sessionFile":""}"#,
            r#"{"sessionId":"s1","sessionFile":"/a/.."}"#,
            r#"{"sessionId":"s1","sessionFile":"/a/.jsonl"}"#,
        ] {
            assert_eq!(other(text), none, "{text}");
        }
        // Its own file, written on Windows: only the name this platform reads is another.
        let own = other(r#"{"sessionId":"s1","sessionFile":"C:\\x\\s1.jsonl"}"#);
        if cfg!(windows) {
            assert_eq!(own, none);
        } else {
            assert_eq!(own, ["C:\\x\\s1.jsonl"]);
        }
        // A patch that changes the session or the file changes what counts.
        let entry = Entry::parse(r#"{"sessionId":"s1","sessionFile":"s2.jsonl"}"#).unwrap();
        let patched = entry.merge_patch(&Patch::parse(r#"{"sessionId":"s2"}"#).unwrap());
        assert_eq!(entry.other_transcripts(), ["s2.jsonl"]);
        assert_eq!(patched.other_transcripts(), none);
    }

    proptest::proptest! {
        #[test]
        fn every_session_read_in_a_name_gives_that_name_back(
            name in "(\\PC|-topic-|\\.jsonl){0,8}",
            id in "[^/]{1,12}",
            thread in "\\PC{0,6}",
        ) {
            // Whatever the name, each session read in it is either the whole stem or comes
            // before a `-topic-`, and none is empty.
            for session in transcript_sessions(&name) {
                proptest::prop_assert!(!session.is_empty());
                proptest::prop_assert!(
                    name == format!("{session}.jsonl")
                        || (name.starts_with(&format!("{session}-topic-")) && name.ends_with(".jsonl")),
                    "{:?} in {:?}", session, name
                );
            }
            // A session's transcript and its topics' are read as its own.
            let own = format!("{id}.jsonl");
            let topic = format!("{id}-topic-{thread}.jsonl");
            proptest::prop_assert!(transcript_sessions(&own).any(|s| s == id));
            proptest::prop_assert!(transcript_sessions(&topic).any(|s| s == id));
            proptest::prop_assert_eq!(is_transcript_name(&name), name.len() > 6 && name.ends_with(".jsonl"));
        }
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn an_entry_is_no_larger_than_before_the_span() {
        // Two words each for the text and the two indexed fields: the span shares its space
        // with the decoded id's pointer, and the flags share `updatedAt`'s second word.
        assert!(
            std::mem::size_of::<super::Entry>() <= 48,
            "{}",
            std::mem::size_of::<super::Entry>()
        );
    }
}
