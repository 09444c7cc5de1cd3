//! JSONL records: one record per line, appended with one `write`, read back whole, torn tails
//! reported and repaired.
//!
//! A record is complete only once its newline is on disk. Bytes after the last newline are a
//! *torn tail* (a crash mid-append, or a short write): readers report it instead of failing, and
//! [`repair_torn_tail`] cuts it off.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Ctx, Error, Operation, Refusal, Result, Step};
use crate::fs::{self, FileSystem};
use crate::json::parse_json;
use crate::replace::{DEFAULT_FILE_MODE, Durability, create_parents, parent_dir};

/// Where an appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Appended {
    /// The byte offset of the record's first byte.
    pub offset: u64,
    /// The bytes written, the newline included.
    pub len: u64,
}

impl Appended {
    /// The offset just past the record's newline.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

#[derive(Clone, Copy, Debug)]
struct AppendConfig {
    sync: bool,
    mode: u32,
    create_parents: bool,
}

/// Appends records to JSONL files, with the options set on it.
///
/// Each record goes out as exactly one `write(2)` of `record + "\n"` on a file opened with
/// `O_APPEND`, so appenders in any number of processes never interleave within a record on a
/// local file system. A record containing a newline, or an empty one, is refused.
///
/// If the kernel accepts only part of the record (the disk filled up), the appender removes the
/// partial bytes again when nobody appended after them, and reports the failure either way;
/// readers treat leftover partial bytes as a torn tail.
///
/// ```
/// use sessionkit_atomic_fs::{RecordAppender, read_records};
/// # fn main() -> Result<(), sessionkit_atomic_fs::Error> {
/// # let path = std::env::temp_dir().join(format!("sk-doc-append-{}.jsonl", std::process::id()));
/// let mut appender = RecordAppender::new();
/// appender.sync(true);
/// let first = appender.append(&path, br#"{"type":"session"}"#)?;
/// let second = appender.append(&path, br#"{"type":"message"}"#)?;
/// assert_eq!(second.offset, first.end());
/// assert_eq!(read_records(&path)?.records.len(), 2);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RecordAppender {
    config: AppendConfig,
    fs: Arc<dyn FileSystem>,
}

impl fmt::Debug for RecordAppender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordAppender")
            .field("sync", &self.config.sync)
            .field("mode", &format_args!("{:o}", self.config.mode))
            .field("create_parents", &self.config.create_parents)
            .finish_non_exhaustive()
    }
}

impl Default for RecordAppender {
    fn default() -> Self {
        RecordAppender::new()
    }
}

impl RecordAppender {
    /// An appender with the defaults: no sync, new files 0600, parents not created.
    pub fn new() -> RecordAppender {
        RecordAppender {
            config: AppendConfig {
                sync: false,
                mode: DEFAULT_FILE_MODE,
                create_parents: false,
            },
            fs: fs::real(),
        }
    }

    /// Follows each append with `fdatasync`, and syncs the directory when the append created
    /// the file, so the record survives a power loss once the call returns.
    ///
    /// By default, appends are not synced: they survive a crash of the process but not
    /// necessarily a power loss.
    pub fn sync(&mut self, yes: bool) -> &mut Self {
        self.config.sync = yes;
        self
    }

    /// Sets the mode of files the appender creates (less the umask). Existing files keep
    /// theirs.
    ///
    /// By default, 0600.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.config.mode = mode & 0o7777;
        self
    }

    /// Creates missing parent directories (mode 0700) instead of failing.
    ///
    /// By default, a missing parent is an error ([`Refusal::ParentMissing`]).
    pub fn create_parents(&mut self, yes: bool) -> &mut Self {
        self.config.create_parents = yes;
        self
    }

    /// Routes every file-system call through `fs`, for fault injection in tests.
    ///
    /// By default, the operating system ([`RealFs`](crate::RealFs)).
    pub fn file_system(&mut self, fs: Arc<dyn FileSystem>) -> &mut Self {
        self.fs = fs;
        self
    }

    /// Appends `record` and a newline to `path`, creating the file if needed.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] for a record with a newline or an empty one (nothing is written);
    /// [`Error::Io`] naming the step otherwise, [`Error::Sync`] if the sync failed.
    pub fn append(&self, path: impl AsRef<Path>, record: &[u8]) -> Result<Appended> {
        let path = path.as_ref();
        let ctx = Ctx::new(Operation::Append, path);
        check_record(ctx, record)?;
        let mut line = Vec::with_capacity(record.len() + 1);
        line.extend_from_slice(record);
        line.push(b'\n');
        self.append_line(ctx, &line)
    }

    /// Appends `value` as one line of compact JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`] if the value cannot be serialised, else as
    /// [`append`](RecordAppender::append).
    pub fn append_json<T: Serialize + ?Sized>(
        &self,
        path: impl AsRef<Path>,
        value: &T,
    ) -> Result<Appended> {
        let path = path.as_ref();
        // Compact JSON escapes newlines inside strings, so the record is one line.
        let record = serde_json::to_vec(value).map_err(|source| Error::Serialize {
            op: Operation::Append,
            path: path.to_path_buf(),
            source,
        })?;
        self.append(path, &record)
    }

    fn append_line(&self, ctx: Ctx<'_>, line: &[u8]) -> Result<Appended> {
        let fs = &*self.fs;
        let path = ctx.path;
        let (mut file, created) = self.open(ctx)?;
        let written = loop {
            match fs.write(&mut file, path, line) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.map_err(|e| ctx.io(Step::Write, path, e))?,
            }
        };
        // With O_APPEND the position after the write is the end of our bytes.
        let end = file
            .stream_position()
            .map_err(|e| ctx.io(Step::Write, path, e))?;
        let offset = end - written as u64;
        if written < line.len() {
            return Err(ctx.io(
                Step::Write,
                path,
                self.undo_short_write(&file, path, offset, end, written, line.len()),
            ));
        }
        if self.config.sync {
            fs.sync_data(&file, path)
                .map_err(|e| ctx.sync(Step::SyncData, path, false, e))?;
            if created {
                let dir = parent_dir(path);
                fs.sync_dir(&dir)
                    .map_err(|e| ctx.sync(Step::SyncDir, &dir, false, e))?;
            }
        }
        Ok(Appended {
            offset,
            len: line.len() as u64,
        })
    }

    /// Opens for appending; reports whether this call created the file.
    fn open(&self, ctx: Ctx<'_>) -> Result<(File, bool)> {
        let fs = &*self.fs;
        let path = ctx.path;
        match fs.open_append(path, self.config.mode, false) {
            Ok(file) => return Ok((file, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx.io(Step::Open, path, e)),
        }
        let mut parents_made = false;
        loop {
            match fs.open_append(path, self.config.mode, true) {
                Ok(file) => return Ok((file, true)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !parents_made => {
                    if !self.config.create_parents {
                        return Err(ctx.refused(Refusal::ParentMissing));
                    }
                    create_parents(fs, ctx, &parent_dir(path), self.config.sync)?;
                    parents_made = true;
                }
                Err(e) => return Err(ctx.io(Step::Open, path, e)),
            }
        }
    }

    /// Removes the partial bytes of a short write if nothing was appended after them, and
    /// describes what is left.
    fn undo_short_write(
        &self,
        file: &File,
        path: &Path,
        offset: u64,
        end: u64,
        written: usize,
        wanted: usize,
    ) -> io::Error {
        let removed = file.metadata().is_ok_and(|m| m.len() == end)
            && self.fs.set_len(file, path, offset).is_ok();
        let state = if removed {
            "the partial record was removed"
        } else {
            "the file now ends in a torn record; repair it"
        };
        io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {written} of {wanted} bytes at offset {offset}; {state}"),
        )
    }
}

fn check_record(ctx: Ctx<'_>, record: &[u8]) -> Result<()> {
    if record.is_empty() {
        return Err(ctx.refused(Refusal::RecordEmpty));
    }
    if record.contains(&b'\n') {
        return Err(ctx.refused(Refusal::RecordHasNewline));
    }
    Ok(())
}

/// Appends `record` and a newline to `path` with the default options (no sync, new files 0600).
///
/// # Errors
///
/// As [`RecordAppender::append`].
pub fn append_record(path: impl AsRef<Path>, record: impl AsRef<[u8]>) -> Result<Appended> {
    RecordAppender::new().append(path, record.as_ref())
}

/// One whole record read back from a JSONL file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The byte offset of the record's first byte.
    pub offset: u64,
    /// The record, without its newline.
    pub bytes: Vec<u8>,
}

/// Bytes after the last newline: a record whose append did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TornTail {
    /// Where the torn bytes start (just past the last newline, or 0).
    pub offset: u64,
    /// How many torn bytes there are.
    pub len: u64,
}

/// The whole records of a JSONL file and, if there is one, its torn tail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Records {
    /// The whole records, in file order.
    pub records: Vec<Record>,
    /// The incomplete last line, if any.
    pub torn_tail: Option<TornTail>,
    /// The offset just past the last whole record: where a reader continues with
    /// [`read_records_from`].
    pub end: u64,
}

/// The parsed records of a JSONL file and, if there is one, its torn tail.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JsonlRecords<T> {
    /// The parsed records, in file order.
    pub values: Vec<T>,
    /// The incomplete last line, if any (never parsed).
    pub torn_tail: Option<TornTail>,
    /// The offset just past the last whole record.
    pub end: u64,
}

/// Reads every whole record of `path`. A torn last line is reported, not an error.
///
/// # Errors
///
/// [`Error::NotFound`] if the file does not exist, [`Error::Io`] if it cannot be read.
pub fn read_records(path: impl AsRef<Path>) -> Result<Records> {
    read_records_from(path, 0)
}

/// Reads the whole records of `path` that start at or after byte `offset`, which should be the
/// [`end`](Records::end) of an earlier read (a record boundary).
///
/// # Errors
///
/// As [`read_records`]; also an [`Error::Io`] if `offset` is past the end of the file (the file
/// was truncated or replaced since the earlier read).
pub fn read_records_from(path: impl AsRef<Path>, offset: u64) -> Result<Records> {
    let path = path.as_ref();
    let ctx = Ctx::new(Operation::Read, path);
    let (mut file, len) = open_to_read(&ctx, path)?;
    if offset > len {
        return Err(ctx.io(
            Step::Read,
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} is past the end of the file ({len} bytes)"),
            ),
        ));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| ctx.io(Step::Read, path, e))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len - offset).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|e| ctx.io(Step::Read, path, e))?;
    Ok(split_records(&bytes, offset))
}

/// Splits `bytes` (which start at file offset `base`) into whole records and a torn tail.
pub fn split_records(bytes: &[u8], base: u64) -> Records {
    let mut records = Vec::new();
    let mut start = 0usize;
    while let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') {
        records.push(Record {
            offset: base + start as u64,
            bytes: bytes[start..start + nl].to_vec(),
        });
        start += nl + 1;
    }
    let torn_tail = (start < bytes.len()).then(|| TornTail {
        offset: base + start as u64,
        len: (bytes.len() - start) as u64,
    });
    Records {
        records,
        torn_tail,
        end: base + start as u64,
    }
}

/// Reads `path` and parses every whole record as JSON. A torn last line is reported in
/// [`JsonlRecords::torn_tail`] and not parsed.
///
/// # Errors
///
/// [`Error::Corrupt`] names the first whole record that is not valid JSON of type `T`: its
/// line number, column and byte offset. Otherwise as [`read_records`].
pub fn read_jsonl<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<JsonlRecords<T>> {
    let path = path.as_ref();
    let records = read_records(path)?;
    let mut values = Vec::with_capacity(records.records.len());
    for (index, record) in records.records.iter().enumerate() {
        let value = parse_json(path, &record.bytes, record.offset).map_err(|e| match e {
            // The parser counts lines within the record; report the line in the file.
            Error::Corrupt {
                path,
                column,
                offset,
                source,
                ..
            } => Error::Corrupt {
                path,
                line: index + 1,
                column,
                offset,
                source,
            },
            other => other,
        })?;
        values.push(value);
    }
    Ok(JsonlRecords {
        values,
        torn_tail: records.torn_tail,
        end: records.end,
    })
}

/// What [`repair_torn_tail`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Repair {
    /// Bytes removed from the end of the file (0 if it had no torn tail).
    pub removed: u64,
    /// The file's length afterwards.
    pub len: u64,
}

/// Truncates a torn tail off `path`, keeping every whole record.
///
/// Only the end of the file is read, backwards in 64 KiB chunks, until the last newline. In
/// durable mode the truncation is synced before the call returns. Run it while no other process
/// appends (under the file's write lock): a record appended during the repair could be cut.
///
/// # Errors
///
/// [`Error::NotFound`] if the file does not exist, [`Error::Io`] or [`Error::Sync`] naming the
/// step otherwise. The file is unchanged unless the truncation itself succeeded.
pub fn repair_torn_tail(path: impl AsRef<Path>, durability: Durability) -> Result<Repair> {
    repair_torn_tail_with(&*fs::real(), path.as_ref(), durability)
}

pub(crate) fn repair_torn_tail_with(
    fs: &dyn FileSystem,
    path: &Path,
    durability: Durability,
) -> Result<Repair> {
    let ctx = Ctx::new(Operation::Repair, path);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ctx.read_io(Step::Open, e))?;
    let len = file
        .metadata()
        .map_err(|e| ctx.io(Step::Read, path, e))?
        .len();
    let keep = whole_records_end(&mut file, len).map_err(|e| ctx.io(Step::Read, path, e))?;
    if keep == len {
        return Ok(Repair { removed: 0, len });
    }
    fs.set_len(&file, path, keep)
        .map_err(|e| ctx.io(Step::Truncate, path, e))?;
    if durability.is_durable() {
        fs.sync_all(&file, path)
            .map_err(|e| ctx.sync(Step::SyncData, path, false, e))?;
    }
    tracing::warn!(path = %path.display(), removed = len - keep, "truncated a torn tail");
    Ok(Repair {
        removed: len - keep,
        len: keep,
    })
}

/// Finds the torn tail of the JSONL file at `path` by reading from its end: only its last
/// byte when it ends in a newline, so a file without a torn tail costs one byte however long
/// it is; else backwards in 64 KiB chunks to its last newline, its tail and at most one chunk
/// more. Nothing is written; `None` if there is no torn tail.
///
/// # Errors
///
/// [`Error::NotFound`] if the file does not exist, [`Error::Io`] naming the step otherwise.
pub fn find_torn_tail(path: impl AsRef<Path>) -> Result<Option<TornTail>> {
    let path = path.as_ref();
    let ctx = Ctx::new(Operation::Read, path);
    let (mut file, len) = open_to_read(&ctx, path)?;
    let keep = whole_records_end(&mut file, len).map_err(|e| ctx.io(Step::Read, path, e))?;
    Ok((keep < len).then_some(TornTail {
        offset: keep,
        len: len - keep,
    }))
}

/// Opens `path` to read, with its length.
fn open_to_read(ctx: &Ctx<'_>, path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| ctx.read_io(Step::Open, e))?;
    let len = file
        .metadata()
        .map_err(|e| ctx.io(Step::Read, path, e))?
        .len();
    Ok((file, len))
}

/// The offset just past the last newline of a file of `len` bytes (0 if it has none).
fn whole_records_end(file: &mut File, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    if len == 0 {
        return Ok(0);
    }
    // Almost every file ends in a newline: one byte says so.
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    let mut buf = vec![0u8; CHUNK.min(len) as usize];
    let mut end = len - 1;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(nl) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + nl as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}
