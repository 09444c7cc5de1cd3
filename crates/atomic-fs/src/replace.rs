//! Atomic replacement of a whole file: temp file, optional fsync, rename, optional directory fsync.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Ctx, Error, Operation, Refusal, Result, Step};
use crate::fs::{self, FileSystem};
use crate::{sys, temp};

/// The mode of a file this crate creates, unless the caller says otherwise.
pub const DEFAULT_FILE_MODE: u32 = 0o600;

/// The mode of a directory this crate creates when asked to create missing parents.
pub const DEFAULT_DIR_MODE: u32 = 0o700;

/// How many bytes of a durable write the kernel is asked to write back at a time, unless the
/// caller says otherwise ([`AtomicWriter::write_behind`]): 2 MiB.
pub const DEFAULT_WRITE_BEHIND: u64 = 2 << 20;

/// How hard a write works to survive a power loss.
///
/// Both modes are atomic against process crashes: readers see the old contents or the new,
/// never a mix. They differ in what a power loss or kernel crash can do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// `fsync` the temp file before the rename and the directory after it. Once the call
    /// returns `Ok`, the new contents survive a power loss. This is the default.
    #[default]
    Durable,
    /// The same steps without the two `fsync` calls. Still atomic against crashes of the
    /// process, but after a power loss the file may hold the old contents (the rename was lost)
    /// or, on some file systems, be empty or zero-filled (the data was lost). Choose it for
    /// state you can rebuild, or when many writes are followed by one explicit sync.
    AtomicOnly,
}

impl Durability {
    /// True for [`Durability::Durable`].
    pub fn is_durable(self) -> bool {
        self == Durability::Durable
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    durability: Durability,
    mode: Option<u32>,
    create_parents: bool,
    /// 0: off.
    write_behind: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            durability: Durability::Durable,
            mode: None,
            create_parents: false,
            write_behind: DEFAULT_WRITE_BEHIND,
        }
    }
}

/// Replaces files atomically, with the options set on it.
///
/// An `AtomicWriter` is cheap to clone and can be shared between threads. The free functions
/// [`write`](crate::write), [`write_json`](crate::write_json) and
/// [`write_json_pretty`](crate::write_json_pretty) use one with the defaults.
///
/// # The steps
///
/// 1. Look at the target without following it (`lstat`). A directory, FIFO, socket or device is
///    refused. A symlink is followed **one hop**: the file it points to is replaced and the
///    link is kept; a link to another link is refused. (Cargo's `write_atomic` follows one hop
///    the same way.)
/// 2. Create `.<name>.<pid>.<random>.sktmp` in the target's directory with `O_CREAT | O_EXCL`,
///    which never follows a symlink planted at that name.
/// 3. Write the contents, looping over short writes.
/// 4. Set the mode (and, for an existing target owned by someone else, the owner, where
///    permitted).
/// 5. In [`Durability::Durable`] mode, `fsync` the temp file. (While step 3 writes, the
///    kernel is asked to write the file back a chunk at a time: see
///    [`write_behind`](AtomicWriter::write_behind).)
/// 6. Rename it over the target.
/// 7. In [`Durability::Durable`] mode, `fsync` the directory.
///
/// A failure in steps 1 to 6 leaves the target byte for byte as it was and removes the temp
/// file. A failed `fsync` is final: the temp file is never renamed into place. A failed
/// directory `fsync` (step 7) happens after the rename; it is reported as an error whose
/// [`target_replaced`](Error::target_replaced) is true.
///
/// # Example
///
/// ```
/// use sessionkit_atomic_fs::{AtomicWriter, Durability};
/// # fn main() -> Result<(), sessionkit_atomic_fs::Error> {
/// # let dir = std::env::temp_dir().join(format!("sk-doc-writer-{}", std::process::id()));
/// let mut writer = AtomicWriter::new();
/// writer.durability(Durability::AtomicOnly).create_parents(true);
/// writer.write(dir.join("state/cache.json"), b"{}")?;
/// assert_eq!(std::fs::read(dir.join("state/cache.json")).unwrap(), b"{}");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AtomicWriter {
    config: Config,
    fs: Arc<dyn FileSystem>,
}

impl fmt::Debug for AtomicWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicWriter")
            .field("durability", &self.config.durability)
            .field("mode", &self.config.mode.map(|m| format!("{m:o}")))
            .field("create_parents", &self.config.create_parents)
            .field("write_behind", &self.config.write_behind)
            .field("fs", &self.fs)
            .finish()
    }
}

impl Default for AtomicWriter {
    fn default() -> Self {
        AtomicWriter::new()
    }
}

impl AtomicWriter {
    /// A writer with the defaults: durable, mode 0600 for new files, parents not created.
    pub fn new() -> AtomicWriter {
        AtomicWriter {
            config: Config::default(),
            fs: fs::real(),
        }
    }

    /// Sets how hard writes work to survive a power loss.
    ///
    /// By default, [`Durability::Durable`].
    pub fn durability(&mut self, durability: Durability) -> &mut Self {
        self.config.durability = durability;
        self
    }

    /// Sets the permission bits every written file gets, new or replaced (not reduced by the
    /// umask).
    ///
    /// By default, a new file gets 0600 and a replaced file keeps the mode it had.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.config.mode = Some(mode & 0o7777);
        self
    }

    /// Creates missing parent directories (mode 0700, less the umask) instead of failing.
    /// In durable mode each new directory's entry is synced too.
    ///
    /// By default, a missing parent is an error ([`Refusal::ParentMissing`]).
    pub fn create_parents(&mut self, yes: bool) -> &mut Self {
        self.config.create_parents = yes;
        self
    }

    /// In [`Durability::Durable`] mode, asks the kernel to start writing the temp file back
    /// to disk each time another `bytes` of it have been written, and waits for the chunk
    /// before that one to be written; 0 turns this off. [`AtomicOnly`](Durability::AtomicOnly)
    /// writes never do it.
    ///
    /// Why: without it, the final `fsync` of a large file sends all of it to the disk at
    /// once, and another file's `fsync` on the same disk that comes meanwhile (a journal's
    /// append, say) waits behind that burst: its writes queue after it, and the disk's cache
    /// flush covers it too (on ext4 with a journal, in ordered mode, so does the journal's
    /// commit). With write-behind, at most about two chunks are ever on their way. In
    /// `cargo xtask bench atomic`'s write-behind probe on the reference VM (an 80 MiB write,
    /// 6 rounds), the other file's worst `write` + `fdatasync` went from 30.5 ms to 13.2 ms,
    /// and the large write took no longer.
    ///
    /// It changes no guarantee: the `fsync` in step 5 stays the durability point. A writeback
    /// error found while waiting for a chunk fails the write step (the kernel reports such an
    /// error only once per open file, so the `fsync` after it could not be trusted). On
    /// platforms other than Linux, and on file systems that refuse the call, it does nothing.
    ///
    /// By default, [`DEFAULT_WRITE_BEHIND`] (2 MiB).
    pub fn write_behind(&mut self, bytes: u64) -> &mut Self {
        self.config.write_behind = bytes;
        self
    }

    /// Routes every file-system call through `fs`, for fault injection and tracing in tests.
    ///
    /// By default, the operating system ([`RealFs`](crate::RealFs)).
    pub fn file_system(&mut self, fs: Arc<dyn FileSystem>) -> &mut Self {
        self.fs = fs;
        self
    }

    /// The durability this writer uses.
    pub fn durability_mode(&self) -> Durability {
        self.config.durability
    }

    /// Replaces `path` with `contents` atomically.
    ///
    /// # Errors
    ///
    /// See [the steps](AtomicWriter#the-steps). The error names the step and the paths.
    pub fn write(&self, path: impl AsRef<Path>, contents: &[u8]) -> Result<()> {
        self.prepare(path, contents)?.commit()
    }

    /// Replaces `path` with `value` as compact JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`] if the value cannot be serialised (nothing is written), else as
    /// [`write`](AtomicWriter::write).
    pub fn write_json<T: Serialize + ?Sized>(
        &self,
        path: impl AsRef<Path>,
        value: &T,
    ) -> Result<()> {
        let path = path.as_ref();
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Serialize {
            op: Operation::Replace,
            path: path.to_path_buf(),
            source,
        })?;
        self.write(path, &bytes)
    }

    /// Replaces `path` with `value` as JSON indented by two spaces (the layout of
    /// `JSON.stringify(value, null, 2)`), without a trailing newline.
    ///
    /// # Errors
    ///
    /// As [`write_json`](AtomicWriter::write_json).
    pub fn write_json_pretty<T: Serialize + ?Sized>(
        &self,
        path: impl AsRef<Path>,
        value: &T,
    ) -> Result<()> {
        let path = path.as_ref();
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Serialize {
            op: Operation::Replace,
            path: path.to_path_buf(),
            source,
        })?;
        self.write(path, &bytes)
    }

    /// Does steps 1 to 5 (everything but the rename and the directory sync) and returns the
    /// written temp file, ready to [`commit`](PendingWrite::commit).
    ///
    /// Use this to check something right before the target changes, as a lock's fence check
    /// does. Dropping the [`PendingWrite`] removes the temp file and leaves the target alone.
    ///
    /// # Errors
    ///
    /// As [`write`](AtomicWriter::write); the temp file is removed on failure.
    pub fn prepare(&self, path: impl AsRef<Path>, contents: &[u8]) -> Result<PendingWrite> {
        self.prepare_with(path, |out| out.write_all(contents))
    }

    /// As [`prepare`](AtomicWriter::prepare), but the contents are written by `fill`, in as
    /// many pieces as it likes, so that a large file need not be built in memory first.
    ///
    /// # Errors
    ///
    /// As [`prepare`](AtomicWriter::prepare); an error returned by `fill` fails the write step
    /// (and removes the temp file) too.
    pub fn prepare_with(
        &self,
        path: impl AsRef<Path>,
        fill: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
    ) -> Result<PendingWrite> {
        let path = path.as_ref();
        let ctx = Ctx::new(Operation::Replace, path);
        let fs = &*self.fs;
        let durable = self.config.durability.is_durable();

        let (target, existing) = resolve_target(fs, ctx)?;
        let dir = parent_dir(&target);
        let name = target
            .file_name()
            .ok_or_else(|| ctx.refused(Refusal::NoFileName))?;
        let mode = self
            .config
            .mode
            .or_else(|| existing.as_ref().map(sys::mode_of))
            .unwrap_or(DEFAULT_FILE_MODE);

        let (temp_path, mut file) = create_temp(fs, ctx, &dir, name, mode, self.config)?;
        let mut pending = PendingWrite {
            fs: self.fs.clone(),
            path: path.to_path_buf(),
            target,
            temp: temp_path,
            dir,
            durability: self.config.durability,
            done: false,
        };

        let written = fill(&mut TempOut {
            fs,
            file: &mut file,
            path: &pending.temp,
            chunk: if durable { self.config.write_behind } else { 0 },
            written: 0,
            started: 0,
        });
        written.map_err(|e| pending.fail(Step::Write, e))?;
        // `O_CREAT` applies the umask; only a mode the umask clipped needs an explicit chmod.
        if sys::mode_after_umask(mode) != mode {
            fs.set_mode(&file, &pending.temp, mode)
                .map_err(|e| pending.fail(Step::SetPermissions, e))?;
        }
        if let Some(existing) = &existing {
            fs.copy_owner(&file, &pending.temp, existing)
                .map_err(|e| pending.fail(Step::SetPermissions, e))?;
        }
        if durable && let Err(e) = fs.sync_all(&file, &pending.temp) {
            let subject = pending.temp.clone();
            pending.discard_quietly();
            return Err(ctx.sync(Step::SyncTemp, &subject, false, e));
        }
        drop(file);
        Ok(pending)
    }
}

/// The temp file as `prepare_with`'s `fill` sees it: every write goes through the file-system
/// seam whole (short writes are looped over), and is written back behind, a chunk at a time.
struct TempOut<'a> {
    fs: &'a dyn FileSystem,
    file: &'a mut File,
    path: &'a Path,
    /// The write-behind chunk; 0: none.
    chunk: u64,
    /// Bytes written so far.
    written: u64,
    /// Bytes whose write-back has been started.
    started: u64,
}

impl TempOut<'_> {
    /// Starts the write-back of every whole chunk written since the last call, each time
    /// waiting for the chunk before it.
    fn write_behind(&mut self) -> io::Result<()> {
        while self.chunk > 0 && self.written - self.started >= self.chunk {
            let (at, len) = (self.started, self.chunk);
            let behind = at.checked_sub(len);
            let done = self
                .fs
                .write_back(self.file, self.path, at, len, false)
                .and_then(|()| match behind {
                    Some(before) => self.fs.write_back(self.file, self.path, before, len, true),
                    None => Ok(()),
                });
            match done {
                Ok(()) => self.started += len,
                // The call cannot be made here: the final fsync writes everything.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Unsupported | io::ErrorKind::InvalidInput
                    ) =>
                {
                    self.chunk = 0;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl io::Write for TempOut<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        fs::write_all(self.fs, self.file, self.path, buf)?;
        self.written += buf.len() as u64;
        self.write_behind()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A written temp file waiting to be renamed over its target.
///
/// Made by [`AtomicWriter::prepare`]. [`commit`](PendingWrite::commit) finishes the replace;
/// dropping it (or calling [`discard`](PendingWrite::discard)) removes the temp file and leaves
/// the target untouched.
pub struct PendingWrite {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    target: PathBuf,
    temp: PathBuf,
    dir: PathBuf,
    durability: Durability,
    done: bool,
}

impl fmt::Debug for PendingWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingWrite")
            .field("target", &self.target)
            .field("temp", &self.temp)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl PendingWrite {
    /// The file that will be replaced (after following a symlink, if the path was one).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temp file holding the new contents.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Renames the temp file over the target and, in durable mode, syncs the directory.
    ///
    /// # Errors
    ///
    /// A failed rename removes the temp file and leaves the target unchanged. A failed directory
    /// sync is an [`Error::Sync`] with [`target_replaced`](Error::target_replaced) true.
    pub fn commit(mut self) -> Result<()> {
        let ctx = Ctx::new(Operation::Replace, &self.path);
        if let Err(e) = self.fs.rename(&self.temp, &self.target) {
            return Err(self.fail(Step::Rename, e));
        }
        self.done = true;
        if self.durability.is_durable() {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| ctx.sync(Step::SyncDir, &self.dir, true, e))?;
        }
        Ok(())
    }

    /// Removes the temp file, leaving the target untouched.
    ///
    /// # Errors
    ///
    /// Fails if the temp file exists but cannot be removed.
    pub fn discard(mut self) -> Result<()> {
        self.done = true;
        match self.fs.remove_file(&self.temp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                Err(Ctx::new(Operation::Replace, &self.path).io(Step::RemoveTemp, &self.temp, e))
            }
        }
    }

    /// Removes the temp file and builds the error for the failed step.
    fn fail(&mut self, step: Step, source: io::Error) -> Error {
        self.discard_quietly();
        Ctx::new(Operation::Replace, &self.path).io(step, &self.temp, source)
    }

    fn discard_quietly(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        match self.fs.remove_file(&self.temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Left for `remove_orphan_temps`; the target is untouched either way.
            Err(e) => {
                tracing::warn!(temp = %self.temp.display(), error = %e, "could not remove temp file")
            }
        }
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        self.discard_quietly();
    }
}

/// Finds the file to replace: the path itself, or the file one symlink hop away.
fn resolve_target(fs: &dyn FileSystem, ctx: Ctx<'_>) -> Result<(PathBuf, Option<Metadata>)> {
    let path = ctx.path;
    if path.file_name().is_none() {
        return Err(ctx.refused(Refusal::NoFileName));
    }
    let meta = match inspect(fs, ctx, path)? {
        None => return Ok((path.to_path_buf(), None)),
        Some(meta) => meta,
    };
    if !meta.file_type().is_symlink() {
        return Ok((path.to_path_buf(), Some(meta)));
    }
    let link = fs
        .read_link(path)
        .map_err(|e| ctx.io(Step::ReadLink, path, e))?;
    let target = parent_dir(path).join(link);
    if target.file_name().is_none() {
        return Err(ctx.refused(Refusal::NoFileName));
    }
    match inspect(fs, ctx, &target)? {
        Some(meta) if meta.file_type().is_symlink() => Err(ctx.refused(Refusal::SymlinkChain)),
        existing => Ok((target, existing)),
    }
}

/// `lstat` of a would-be target: `None` if absent, an error if it cannot be replaced.
fn inspect(fs: &dyn FileSystem, ctx: Ctx<'_>, path: &Path) -> Result<Option<Metadata>> {
    match fs.symlink_metadata(path) {
        Ok(meta) => {
            let kind = meta.file_type();
            if kind.is_dir() {
                Err(ctx.refused(Refusal::IsDirectory))
            } else if kind.is_file() || kind.is_symlink() {
                Ok(Some(meta))
            } else {
                Err(ctx.refused(Refusal::NotRegularFile))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ctx.io(Step::Inspect, path, e)),
    }
}

/// The directory holding `path`; `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates a fresh temp file beside the target, creating parents first if allowed.
fn create_temp(
    fs: &dyn FileSystem,
    ctx: Ctx<'_>,
    dir: &Path,
    name: &OsStr,
    mode: u32,
    config: Config,
) -> Result<(PathBuf, File)> {
    let mut parents_made = false;
    // A name collision is astronomically unlikely; a few retries cover it without a loop that
    // could spin forever on a file system that always answers EEXIST.
    let mut collisions = 0;
    loop {
        let temp = dir.join(temp::temp_name(name));
        match fs.create_new(&temp, mode) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && collisions < 8 => {
                collisions += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !parents_made => {
                if !config.create_parents {
                    return Err(ctx.refused(Refusal::ParentMissing));
                }
                create_parents(fs, ctx, dir, config.durability.is_durable())?;
                parents_made = true;
            }
            Err(e) => return Err(ctx.io(Step::CreateTemp, &temp, e)),
        }
    }
}

/// Creates `dir` and its missing ancestors (mode 0700), syncing each new entry when durable.
pub(crate) fn create_parents(
    fs: &dyn FileSystem,
    ctx: Ctx<'_>,
    dir: &Path,
    durable: bool,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(d) = cursor {
        if d.as_os_str().is_empty() {
            break;
        }
        match fs.symlink_metadata(d) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(d.to_path_buf());
                cursor = d.parent();
            }
            Err(e) => return Err(ctx.io(Step::CreateParent, d, e)),
        }
    }
    for d in missing.iter().rev() {
        match fs.create_dir(d, DEFAULT_DIR_MODE) {
            Ok(()) => {}
            // Another writer made it first; that is what we wanted.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ctx.io(Step::CreateParent, d, e)),
        }
        if durable {
            let parent = parent_dir(d);
            fs.sync_dir(&parent)
                .map_err(|e| ctx.sync(Step::SyncDir, &parent, false, e))?;
        }
    }
    Ok(())
}

/// Replaces `path` with `contents` atomically and durably, with the default options.
///
/// See [`AtomicWriter`] for the steps and the options.
///
/// # Errors
///
/// As [`AtomicWriter::write`].
pub fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<()> {
    AtomicWriter::new().write(path, contents.as_ref())
}

/// Replaces `path` with `value` as compact JSON, atomically and durably.
///
/// # Errors
///
/// As [`AtomicWriter::write_json`].
pub fn write_json<T: Serialize + ?Sized>(path: impl AsRef<Path>, value: &T) -> Result<()> {
    AtomicWriter::new().write_json(path, value)
}

/// Replaces `path` with `value` as two-space-indented JSON, atomically and durably.
///
/// # Errors
///
/// As [`AtomicWriter::write_json`].
pub fn write_json_pretty<T: Serialize + ?Sized>(path: impl AsRef<Path>, value: &T) -> Result<()> {
    AtomicWriter::new().write_json_pretty(path, value)
}
