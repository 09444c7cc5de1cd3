//! The snapshot, `sessions.json`: OpenClaw's registry format, read and written compatibly, and
//! quarantine for damaged files.
//!
//! The snapshot is one JSON object `{sessionKey: entry}`. OpenClaw writes it with
//! `JSON.stringify(store, null, 2)`; [`encode_snapshot`] writes the same layout, keys sorted,
//! each entry's field values with their bytes as they were read.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::entry::Entry;
use crate::error::{Error, Operation, Result, SnapshotProblem};
use crate::raw::{self, Parsed};
use crate::state::State;

/// Loads the snapshot at `path` into a [`State`].
///
/// A missing file is an empty registry. The file is read in chunks of 64 KiB and each entry
/// is parsed as soon as it is whole, so peak memory is the state being built plus about one
/// chunk, never the whole file besides the state. (For 100,000 entries of about 600 bytes the
/// state is about 1.2 times the pretty-printed file, indexes included.) A file that does not
/// parse this way is read again whole and judged by [`parse_snapshot`], so every error is the
/// same as from the bytes. If a key appears twice, the last entry wins (as with `JSON.parse`).
///
/// # Errors
///
/// [`Error::CorruptSnapshot`] (see [`parse_snapshot`]); [`Error::Io`] if the file exists but
/// cannot be read. The file is never changed: quarantine a corrupt one ([`quarantine`]), never
/// overwrite it with an empty registry.
pub fn load_snapshot(path: impl AsRef<Path>) -> Result<State> {
    let path = path.as_ref();
    let read_error = |e| Error::io(Operation::LoadSnapshot, "read", path, path, e);
    let mut file = match crate::sys::open_regular(fs::OpenOptions::new().read(true), path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::new()),
        Err(e) => return Err(read_error(e)),
    };
    if let Some(state) = stream_snapshot(&mut file) {
        return Ok(state);
    }
    // Damage, or a read error: the strict parser over the same file says what and where.
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(read_error)?;
    parse_snapshot(path, &bytes)
}

/// A snapshot parsed before the journal's lock was taken, with the file it was read from: an
/// open or a reload parses the snapshot (the long part of loading a store) without holding
/// up other processes' writers, and uses it under the lock only if the path still names that
/// file. A compaction puts a new snapshot in place by a rename, so the file read is either
/// the one that goes with the journal found under the lock, or no longer at the path.
pub(crate) struct Early {
    state: State,
    file: FileStamp,
}

/// What tells one snapshot file from another: its device and inode, and its length and
/// modification time, in case something rewrote it in place.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp((u64, u64), u64, Option<SystemTime>);

impl FileStamp {
    fn of(meta: &fs::Metadata) -> FileStamp {
        FileStamp(
            sessionkit_atomic_fs::file_identity(meta),
            meta.len(),
            meta.modified().ok(),
        )
    }
}

impl Early {
    /// Parses the snapshot at `path`, with no lock held. `None` if there is none, or if it
    /// cannot be read or parsed, or changed while it was read: the load under the lock then
    /// reads it itself, and reports why.
    pub(crate) fn load(path: &Path) -> Option<Early> {
        let mut file = crate::sys::open_regular(fs::OpenOptions::new().read(true), path).ok()?;
        let stamp = FileStamp::of(&file.metadata().ok()?);
        let state = stream_snapshot(&mut file)?;
        #[cfg(test)]
        crate::hooks::reached(crate::hooks::Point::SnapshotParsed, path);
        (FileStamp::of(&file.metadata().ok()?) == stamp).then_some(Early { state, file: stamp })
    }

    /// The state, if `path` still names the file it was read from.
    pub(crate) fn if_current(self, path: &Path) -> Option<State> {
        let now = FileStamp::of(&fs::metadata(path).ok()?);
        (now == self.file).then_some(self.state)
    }
}

/// Fails with [`Error::MissingSnapshot`] if the snapshot at `path` was not found while the
/// journal's `header` says a compaction wrote it (only a compaction's journal has a base, and
/// a compaction renames its snapshot into place before its journal).
pub(crate) fn expect_snapshot(
    path: &Path,
    found: bool,
    journal_path: &Path,
    header: Option<&crate::journal::JournalHeader>,
) -> Result<()> {
    match header {
        Some(header) if header.base.is_some() && !found => Err(Error::MissingSnapshot {
            path: path.to_path_buf(),
            journal: journal_path.to_path_buf(),
            epoch: header.epoch,
        }),
        _ => Ok(()),
    }
}

/// Whether [`load_snapshot`] finds a file at `path`; an error to look counts as found, so that
/// reading the file reports it.
pub(crate) fn snapshot_found(path: &Path) -> bool {
    !matches!(fs::metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// How much of the snapshot is read at a time.
const CHUNK: usize = 64 * 1024;

/// Parses a well-formed snapshot entry by entry as it is read; `None` for anything else (a read
/// error, invalid JSON, an entry that is not an object), which the caller hands to the strict
/// parser. Only the top level (`{`, keys, `:`, `,`, `}`) is checked here; keys and entries are
/// parsed by serde_json, as [`parse_snapshot`] parses them.
fn stream_snapshot(file: &mut File) -> Option<State> {
    let mut input = Chunked {
        file,
        buf: Vec::with_capacity(2 * CHUNK),
        pos: 0,
        eof: false,
    };
    let mut state = State::new();
    if input.skip_ws()? != b'{' {
        return None;
    }
    input.pos += 1;
    let mut next = input.skip_ws()?;
    if next == b'}' {
        input.pos += 1;
        return input.at_end().then_some(state);
    }
    loop {
        input.drop_consumed();
        if next != b'"' {
            return None;
        }
        let key_start = input.pos;
        let key_end = input.string_end(key_start)?;
        input.pos = key_end;
        if input.skip_ws()? != b':' {
            return None;
        }
        input.pos += 1;
        if input.skip_ws()? != b'{' {
            return None;
        }
        let value_start = input.pos;
        let value_end = input.object_end(value_start)?;
        input.pos = value_end;
        let key_bytes = &input.buf[key_start..key_end];
        let key: Cow<'_, str> = match serde_json::from_slice::<&str>(key_bytes) {
            Ok(key) => Cow::Borrowed(key),
            Err(_) => Cow::Owned(serde_json::from_slice::<String>(key_bytes).ok()?),
        };
        let value = std::str::from_utf8(&input.buf[value_start..value_end]).ok()?;
        let Ok(Parsed::Object(fields)) = raw::parse_object(value) else {
            return None;
        };
        let entry = Entry::from_fields(&fields);
        state.insert(&key, entry);
        match input.skip_ws()? {
            b',' => {
                input.pos += 1;
                next = input.skip_ws()?;
            }
            b'}' => {
                input.pos += 1;
                return input.at_end().then_some(state);
            }
            _ => return None,
        }
    }
}

/// A file read in chunks, with a cursor into the bytes not yet dropped.
struct Chunked<'a> {
    file: &'a mut File,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Chunked<'_> {
    /// The byte at index `i` of the buffer, reading more as needed; `None` past the end of the
    /// file or on a read error.
    fn byte(&mut self, i: usize) -> Option<u8> {
        while i >= self.buf.len() {
            if self.eof {
                return None;
            }
            let old = self.buf.len();
            self.buf.resize(old + CHUNK, 0);
            let n = loop {
                match self.file.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.buf.truncate(old);
                        return None;
                    }
                }
            };
            self.buf.truncate(old + n);
            self.eof = n == 0;
        }
        Some(self.buf[i])
    }

    /// Drops the bytes before the cursor once they fill a chunk, so the buffer stays small.
    fn drop_consumed(&mut self) {
        if self.pos >= CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Moves the cursor past JSON whitespace and returns the byte there.
    fn skip_ws(&mut self) -> Option<u8> {
        loop {
            match self.byte(self.pos)? {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b => return Some(b),
            }
        }
    }

    /// True if only whitespace follows the cursor.
    fn at_end(&mut self) -> bool {
        self.skip_ws().is_none() && self.eof
    }

    /// The index just past the string that starts (with its `"`) at `start`.
    fn string_end(&mut self, start: usize) -> Option<usize> {
        let mut i = start + 1;
        loop {
            match self.byte(i)? {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
    }

    /// The index just past the object or array that starts at `start`, by counting brackets
    /// outside strings (whether they match is left to the parser).
    fn object_end(&mut self, start: usize) -> Option<usize> {
        let mut depth = 0usize;
        let mut i = start;
        loop {
            match self.byte(i)? {
                b'"' => {
                    i = self.string_end(i)?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// Parses snapshot bytes into a [`State`]. `path` only names the file in errors.
///
/// Never panics, whatever the bytes.
///
/// # Errors
///
/// [`Error::CorruptSnapshot`], with the line and column, if the bytes are empty (OpenClaw and
/// sessionkit replace the file atomically, so an empty file is damage, not an empty registry),
/// are not UTF-8, are not valid JSON, are not a JSON object, or hold an entry that is not an object.
pub fn parse_snapshot(path: &Path, bytes: &[u8]) -> Result<State> {
    let corrupt = |line, column, problem, source| Error::CorruptSnapshot {
        path: path.to_path_buf(),
        line,
        column,
        problem,
        source,
    };
    if bytes.is_empty() {
        return Err(corrupt(1, 0, SnapshotProblem::Empty, None));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(utf8) => {
            // Name the first damage: a syntax error before the bad byte is the JSON parser's to
            // report, anything else is the bad byte.
            let (line, column) = line_column(bytes, utf8.valid_up_to());
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                && (e.line(), e.column()) < (line, column)
            {
                return Err(corrupt(
                    e.line(),
                    e.column(),
                    SnapshotProblem::InvalidJson,
                    Some(e),
                ));
            }
            return Err(corrupt(line, column, SnapshotProblem::InvalidUtf8, None));
        }
    };
    let fields = match raw::parse_object(text) {
        Ok(Parsed::Object(fields)) => fields,
        Ok(Parsed::NotObject(offset)) => {
            let (line, column) = line_column(bytes, offset);
            return Err(corrupt(line, column, SnapshotProblem::NotAnObject, None));
        }
        Err(e) => {
            return Err(corrupt(
                e.line(),
                e.column(),
                SnapshotProblem::InvalidJson,
                Some(e),
            ));
        }
    };
    let mut state = State::new();
    for (key, value) in &fields {
        let entry = match raw::parse_object(value.get()) {
            Ok(Parsed::Object(entry_fields)) => Entry::from_fields(&entry_fields),
            // The value was parsed once already, so only its type can be wrong.
            _ => {
                let (line, column) = line_column(bytes, raw::offset_in(text, value.get()));
                let problem = SnapshotProblem::EntryNotAnObject {
                    key: key.to_string(),
                };
                return Err(corrupt(line, column, problem, None));
            }
        };
        state.insert(key, entry);
    }
    Ok(state)
}

/// The 1-based line and column (in bytes) of byte `offset`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, before.len() - line_start + 1)
}

/// The snapshot of `state` as bytes: pretty-printed with two spaces, keys in sorted order (byte
/// order of UTF-8), a trailing newline.
///
/// ```text
/// {
///   "agent:main:main": {
///     "sessionId": "0b7e...",
///     "updatedAt": 1763708000000
///   }
/// }
/// ```
///
/// Each field value is written with the bytes it holds in memory. A value read from an
/// OpenClaw snapshot keeps its original indentation, which is right for its depth, so such an
/// entry is written back exactly as OpenClaw wrote it; a value that came through the journal is
/// compact. Both are valid JSON for every reader. Write the bytes with `sessionkit-atomic-fs`.
pub fn encode_snapshot(state: &State) -> Vec<u8> {
    let capacity = usize::try_from(state.stats().bytes).unwrap_or(0) * 5 / 4 + 16;
    let mut out = String::with_capacity(capacity);
    let mut first = true;
    push_entries(&mut out, &mut first, state.iter());
    finish_snapshot(&mut out, first);
    out.into_bytes()
}

/// Appends entries to a snapshot being encoded (as [`encode_snapshot`] lays them out);
/// `first` says whether none was written yet, and is updated. Compaction encodes in slices
/// this way, so that writers are never held up for the whole encoding.
pub(crate) fn push_entries<'a>(
    out: &mut String,
    first: &mut bool,
    entries: impl Iterator<Item = (&'a str, &'a Entry)>,
) {
    for (key, entry) in entries {
        out.push_str(if *first { "{\n  " } else { ",\n  " });
        *first = false;
        raw::push_json_string(out, key);
        out.push_str(": ");
        let fields = entry.fields();
        if fields.is_empty() {
            out.push_str("{}");
            continue;
        }
        out.push('{');
        for (j, (name, value)) in fields.iter().enumerate() {
            out.push_str(if j == 0 { "\n    " } else { ",\n    " });
            raw::push_json_string(out, name);
            out.push_str(": ");
            out.push_str(value.get());
        }
        out.push_str("\n  }");
    }
}

/// Ends a snapshot begun with [`push_entries`]; `first` is still true if it has no entries.
pub(crate) fn finish_snapshot(out: &mut String, first: bool) {
    out.push_str(if first { "{}\n" } else { "\n}\n" });
}

/// Renames a damaged file aside, to `<name>.corrupt.<UTC time>` in the same directory (for
/// example `sessions.json.corrupt.20261121T073012.123Z`), and returns the new path for the
/// caller to report.
///
/// An existing file is never overwritten: the new name is reserved by creating it exclusively
/// (`O_CREAT|O_EXCL`, mode 0600), then the damaged file is renamed over the reservation, so
/// the file keeps its own mode. If the name is
/// taken, `.1`, `.2`, ... is added. The rename is atomic for the damaged file's name: the
/// original path names either the damaged file or nothing. If the process dies between the
/// reservation and the rename, an empty `.corrupt.` file is left behind.
///
/// # Errors
///
/// [`Error::Io`] naming the step: `inspect` ([`is_not_found`](Error::is_not_found) if `path`
/// does not exist), `reserve` or `rename to`. On error the damaged file is where it was.
pub fn quarantine(path: impl AsRef<Path>) -> Result<PathBuf> {
    quarantine_at(path, SystemTime::now())
}

/// [`quarantine`] with the time that names the file given.
///
/// # Errors
///
/// As [`quarantine`].
pub fn quarantine_at(path: impl AsRef<Path>, at: SystemTime) -> Result<PathBuf> {
    let path = path.as_ref();
    let io = |step, subject: &Path, e| Error::io(Operation::Quarantine, step, path, subject, e);
    fs::symlink_metadata(path).map_err(|e| io("inspect", path, e))?;
    let (candidate, _) = reserve_aside(path, at, PRIVATE)?;
    if let Err(e) = crate::sys::rename(path, &candidate) {
        // Give the name back; the damaged file has not moved.
        let _ = fs::remove_file(&candidate);
        return Err(io("rename to", &candidate, e));
    }
    tracing::warn!(from = %path.display(), to = %candidate.display(), "quarantined a damaged file");
    Ok(candidate)
}

/// Copies a damaged file's `bytes` aside, to the name [`quarantine`] would rename it to, and
/// flushes the copy to the device; the damaged file stays where it is, for the caller to
/// replace atomically. Unlike a rename, this never leaves the path naming nothing, which
/// another process would take for a missing file and create anew.
///
/// The copy is created with mode 0600, less what the damaged file's own mode withholds (a file
/// of mode 0400 gives a copy of mode 0400), and the umask applies as usual: it holds what the
/// file held, so it is never readable by more users than the file was, or than the rename that
/// [`quarantine`] does would leave it.
pub(crate) fn quarantine_copy(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let io = |step, subject: &Path, e| Error::io(Operation::Quarantine, step, path, subject, e);
    let mode = fs::metadata(path).map_or(PRIVATE, |meta| copy_mode(&meta));
    let (candidate, mut file) = reserve_aside(path, SystemTime::now(), mode)?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        let _ = fs::remove_file(&candidate);
        return Err(io("copy to", &candidate, e));
    }
    tracing::warn!(from = %path.display(), to = %candidate.display(),
        "copied a damaged file aside");
    Ok(candidate)
}

/// The mode a file aside is created with: read and write for its owner alone.
const PRIVATE: u32 = 0o600;

/// The mode of a copy of the file `meta` describes: [`PRIVATE`], less the permissions the file
/// withholds from its owner.
#[cfg(unix)]
fn copy_mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & PRIVATE
}

/// Elsewhere the mode is not used.
#[cfg(not(unix))]
fn copy_mode(_meta: &fs::Metadata) -> u32 {
    PRIVATE
}

/// Reserves the quarantine name for `path` by creating it exclusively with `mode` (on Unix, less
/// the umask): `<name>.corrupt.<time>`, or with `.1`, `.2`, ... added if that is taken.
fn reserve_aside(path: &Path, at: SystemTime, mode: u32) -> Result<(PathBuf, File)> {
    let io = |step, subject: &Path, e| Error::io(Operation::Quarantine, step, path, subject, e);
    let Some(name) = path.file_name() else {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "the path names no file");
        return Err(io("inspect", path, e));
    };
    let stamp = compact_utc(at);
    let base = format!("{}.corrupt.{stamp}", name.to_string_lossy());
    for n in 0u32.. {
        let candidate = if n == 0 {
            path.with_file_name(&base)
        } else {
            path.with_file_name(format!("{base}.{n}"))
        };
        let mut options = File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        match options.open(&candidate) {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("reserve", &candidate, e)),
        }
    }
    // `0u32..` has 2^32 names; all of them taken is not a state a directory can be in.
    Err(io(
        "reserve",
        path,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "every quarantine name is taken",
        ),
    ))
}

/// `YYYYMMDDTHHMMSS.mmmZ` in UTC (times before 1970 count as 1970): the ISO form without the
/// separators a file name does not need.
pub(crate) fn compact_utc(at: SystemTime) -> String {
    sessionkit_write_lock::format_created_at(at).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn compact_utc_matches_date() {
        // `date -u -d @1795246212.123 +%Y%m%dT%H%M%S.%3NZ`
        let at = UNIX_EPOCH + Duration::from_millis(1_795_246_212_123);
        assert_eq!(compact_utc(at), "20261121T073012.123Z");
        assert_eq!(compact_utc(UNIX_EPOCH), "19700101T000000.000Z");
        assert_eq!(
            compact_utc(UNIX_EPOCH + Duration::from_millis(951_782_400_000)),
            "20000229T000000.000Z"
        );
        // Before 1970 counts as 1970, so a quarantine name never starts with a sign.
        assert_eq!(
            compact_utc(UNIX_EPOCH - Duration::from_secs(1)),
            "19700101T000000.000Z"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_copy_aside_is_no_more_readable_than_the_file_or_0600() {
        use std::os::unix::fs::PermissionsExt;

        let dir = sessionkit_test_support::Scratch::new("quarantine-mode");
        // A file others may read gives a copy only its owner may; a file its owner may only
        // read gives a copy with that mode.
        for (name, mode, expected) in [("open", 0o644, 0o600), ("read-only", 0o400, 0o400)] {
            let path = dir.join(name);
            fs::write(&path, b"damaged").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let aside = quarantine_copy(&path, b"damaged").unwrap();
            assert_eq!(fs::read(&aside).unwrap(), b"damaged");
            let got = fs::metadata(&aside).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, expected, "{name}: the copy's mode is {got:o}");
        }
    }

    #[test]
    fn line_column_counts_bytes() {
        assert_eq!(line_column(b"ab\ncd", 0), (1, 1));
        assert_eq!(line_column(b"ab\ncd", 3), (2, 1));
        assert_eq!(line_column(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_column(b"ab", 99), (1, 3));
    }
}
