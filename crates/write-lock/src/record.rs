//! The owner record: the JSON a lock's sidecar file holds, and how it is read back.
//!
//! The record is a superset of OpenClaw's lock payload (`pid`, `createdAt`, `starttime`,
//! `maxHoldMs`), so each program can judge the other's locks. Reading follows OpenClaw's rule:
//! a field that is missing or invalid is dropped, never an error, and bytes that are not a JSON
//! object carry no record at all.

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::{Map, Value};

use std::time::SystemTime;

use crate::time::{format_iso8601_ms_unsigned, parse_iso8601_ms, system_time_ms};

/// The format version this library writes in the `sessionkit` field.
pub const RECORD_FORMAT: u32 = 1;

/// The text of a record's `createdAt` for `t`, as JavaScript's `Date.prototype.toISOString()`
/// writes it and OpenClaw stores it: `2026-05-01T10:00:00.123Z`, UTC, always three fraction
/// digits. A time before 1970 is written as `1970-01-01T00:00:00.000Z`.
///
/// For programs and tests that write records of other formats (OpenClaw's) themselves;
/// [`OwnerRecord::to_bytes`] formats `createdAt` this way too.
pub fn format_created_at(t: SystemTime) -> String {
    format_iso8601_ms_unsigned(system_time_ms(t))
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`: the largest integral float accepted as an integer.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Who holds a lock, as recorded in its sidecar file.
///
/// Every field is optional because records written by other programs (and damaged ones) lack
/// some; [`parse_record`] documents what makes each field valid. The JSON key of each field is
/// given in its documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OwnerRecord {
    /// JSON `pid`: the owner's process id. Valid: an integer from 1 to `u32::MAX`.
    pub pid: Option<u32>,
    /// JSON `createdAt`: when the lock was taken, in milliseconds since the Unix epoch, written
    /// as an ISO-8601 string (`2026-05-01T10:00:00.000Z`). Valid: a string with a `Z` or
    /// `±HH:MM` zone naming a real instant from 1970 to 9999.
    pub created_at_ms: Option<u64>,
    /// JSON `starttime`: the owner's start time, to tell a recycled pid from the owner. On Linux
    /// it is field 22 of `/proc/<pid>/stat` (clock ticks since boot); OpenClaw on macOS writes
    /// epoch milliseconds here. Valid: an integer ≥ 0.
    pub starttime: Option<u64>,
    /// JSON `maxHoldMs`: the longest the owner said it would hold the lock. Valid: an integer ≥ 1.
    pub max_hold_ms: Option<u64>,
    /// JSON `sessionkit`: the record format version ([`RECORD_FORMAT`]); `None` means another
    /// program (OpenClaw) wrote the record. Valid: an integer from 1 to `u32::MAX`.
    pub format: Option<u32>,
    /// JSON `token`: the random token that identifies this owner's acquisition. Valid: a
    /// non-empty string.
    pub token: Option<String>,
    /// JSON `hostname`: the owner's host name. Valid: a non-empty string.
    pub hostname: Option<String>,
    /// JSON `bootId`: the owner's kernel boot id, to tell a record from before a reboot.
    /// Valid: a non-empty string.
    pub boot_id: Option<String>,
    /// JSON `program`: the owner's executable name. Valid: a non-empty string.
    pub program: Option<String>,
    /// JSON `label`: the holder label the caller chose. Valid: a non-empty string.
    pub label: Option<String>,
    /// JSON `generation`: the fencing generation of this acquisition. Valid: an integer ≥ 0.
    pub generation: Option<u64>,
    /// JSON `osLock`: the owner holds an OS advisory lock (`flock`) on the sidecar for as long as
    /// it holds the lock. Only `true` counts; anything else, or no value, reads as `false`.
    pub os_lock: bool,
}

impl OwnerRecord {
    /// The record as written to the sidecar: pretty JSON (two-space indent) and a trailing
    /// newline.
    ///
    /// Keys come in this order: `pid`, `createdAt`, `starttime`, `maxHoldMs`, `sessionkit`,
    /// `token`, `hostname`, `bootId`, `program`, `label`, `generation`, `osLock`. Fields that are
    /// `None` are left out; `osLock` is always written. A `createdAt` past year 9999 is written
    /// in JavaScript's expanded form, which does not read back.
    pub fn to_bytes(&self) -> Vec<u8> {
        // serde_json's pretty printer writes exactly this for an object of scalars; building it
        // here keeps the write path free of a `Result` that could never be an error.
        let mut out = String::from("{\n");
        for (i, (key, value)) in self.entries().into_iter().enumerate() {
            if i > 0 {
                out.push_str(",\n");
            }
            // `Value`'s `Display` is its compact JSON, strings escaped.
            out.push_str(&format!("  \"{key}\": {value}"));
        }
        out.push_str("\n}\n");
        out.into_bytes()
    }

    /// The JSON keys and values of the present fields, in file order; `osLock` always last.
    fn entries(&self) -> Vec<(&'static str, Value)> {
        let text = |s: &Option<String>| s.clone().map(Value::String);
        [
            ("pid", self.pid.map(Value::from)),
            (
                "createdAt",
                self.created_at_ms
                    .map(|ms| Value::String(format_iso8601_ms_unsigned(ms))),
            ),
            ("starttime", self.starttime.map(Value::from)),
            ("maxHoldMs", self.max_hold_ms.map(Value::from)),
            ("sessionkit", self.format.map(Value::from)),
            ("token", text(&self.token)),
            ("hostname", text(&self.hostname)),
            ("bootId", text(&self.boot_id)),
            ("program", text(&self.program)),
            ("label", text(&self.label)),
            ("generation", self.generation.map(Value::from)),
            ("osLock", Some(Value::Bool(self.os_lock))),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect()
    }

    /// True if this library wrote the record (it has a `sessionkit` format version).
    pub fn is_ours(&self) -> bool {
        self.format.is_some()
    }

    /// True if the owner promised to hold an OS lock on the sidecar while it holds the lock, so
    /// that a contender able to take that OS lock knows the owner is gone.
    ///
    /// Only records of this library can make the promise: another program's `osLock` key means
    /// nothing to us.
    pub fn promises_os_lock(&self) -> bool {
        self.is_ours() && self.os_lock
    }
}

impl Serialize for OwnerRecord {
    /// The same JSON object as [`OwnerRecord::to_bytes`], with `createdAt` as its ISO string, for
    /// reports.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries = self.entries();
        let mut s = serializer.serialize_struct("OwnerRecord", entries.len())?;
        for (key, value) in &entries {
            s.serialize_field(key, value)?;
        }
        s.end()
    }
}

/// What a sidecar file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "a payload is nearly always a record and lives briefly; boxing would only add an allocation"
)]
pub enum Payload {
    /// The file is empty or only whitespace (an owner that crashed between creating and writing
    /// it, or is writing right now).
    Empty,
    /// The bytes are not a JSON object (not JSON at all, or another JSON value such as an array
    /// or `null`).
    Unparsable,
    /// A JSON object; fields that were missing or invalid are `None` (OpenClaw's rule: invalid
    /// fields are dropped).
    Record(OwnerRecord),
}

impl Payload {
    /// The record, if the file held a JSON object.
    pub fn record(&self) -> Option<&OwnerRecord> {
        match self {
            Payload::Record(r) => Some(r),
            Payload::Empty | Payload::Unparsable => None,
        }
    }
}

/// Reads a sidecar file's bytes. Never panics, on any bytes.
///
/// - Empty bytes, or only ASCII whitespace, are [`Payload::Empty`].
/// - Anything that is not one JSON object (invalid JSON or UTF-8, trailing data, an array,
///   a number, `null`, nesting deeper than the JSON parser's limit) is [`Payload::Unparsable`].
/// - A JSON object is a [`Payload::Record`]. Each field is read by the rule on its
///   [`OwnerRecord`] field; a missing or invalid one is `None` (or `false` for `osLock`).
///   Unknown keys are ignored; a repeated key counts with its last value, as in JavaScript.
///
/// Integers follow JavaScript, which has no separate integer type: `12`, `12.0` and `1.2e1`
/// are all the integer 12. A float with a fraction (`12.5`), a negative number, a number out of
/// the field's range, or an integral float above 2^53 − 1 (which JavaScript cannot hold
/// exactly) is invalid. Integers written as floats with many digits (`9007199254740991.0`) may
/// read back a unit off, as the JSON parser rounds them; JavaScript never writes integers that
/// way. Strings must be non-empty; their content is not otherwise checked.
pub fn parse_record(bytes: &[u8]) -> Payload {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Payload::Empty;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Payload::Record(record_from_map(&map)),
        Ok(_) | Err(_) => Payload::Unparsable,
    }
}

fn record_from_map(map: &Map<String, Value>) -> OwnerRecord {
    let uint = |key: &str| map.get(key).and_then(json_uint);
    let text = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    OwnerRecord {
        pid: uint("pid")
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1),
        created_at_ms: map
            .get("createdAt")
            .and_then(Value::as_str)
            .and_then(parse_iso8601_ms),
        starttime: uint("starttime"),
        max_hold_ms: uint("maxHoldMs").filter(|n| *n >= 1),
        format: uint("sessionkit")
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1),
        token: text("token"),
        hostname: text("hostname"),
        boot_id: text("bootId"),
        program: text("program"),
        label: text("label"),
        generation: uint("generation"),
        os_lock: map.get("osLock") == Some(&Value::Bool(true)),
    }
}

/// A JSON number that is a non-negative integer, by JavaScript's reckoning (see [`parse_record`]).
fn json_uint(value: &Value) -> Option<u64> {
    let Value::Number(n) = value else {
        return None;
    };
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    if n.is_i64() {
        // A negative integer.
        return None;
    }
    let f = n.as_f64()?;
    // `-0.0` passes and becomes 0, as JavaScript would read it.
    (f.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(&f)).then_some(f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn created_at_is_written_as_javascript_writes_it() {
        // `new Date(1700000000123).toISOString()`
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(format_created_at(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_created_at(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(format_created_at(before), "1970-01-01T00:00:00.000Z");
        let text = format_created_at(t);
        let parsed = parse_record(format!(r#"{{"createdAt": "{text}"}}"#).as_bytes());
        assert_eq!(
            parsed.record().and_then(|r| r.created_at_ms),
            Some(1_700_000_000_123)
        );
    }
}
