//! The journal file as the store uses it: opened once, locked for each batch, checked against
//! its path so that a compaction elsewhere is noticed, read from an offset, appended to.
//!
//! Every function here blocks; callers run them on the writer thread or a blocking thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::sys::{self, JournalLock};

/// A file's identity: device and inode.
pub(crate) type FileId = (u64, u64);

/// An open journal file.
///
/// A writer's bytes are not final until it lets go of the exclusive lock: if its fsync fails,
/// it cuts them back out. So readers never read bytes a writer may still take back: they read
/// under the shared lock, each taken through an open of the file of its own (an OS lock
/// belongs to an open file: taken through the writer's, it would change the writer's own
/// lock, and taken through one open shared by several readers, the first to let go would let
/// go for all), or, while this process holds the exclusive lock, only up to where its own
/// batch starts, and with the lock kept from being let go until they are done
/// ([`JournalFile::read_while_held`]).
#[derive(Debug)]
pub(crate) struct JournalFile {
    pub(crate) path: PathBuf,
    file: File,
    pub(crate) id: FileId,
    /// True while this process holds the exclusive lock.
    held: AtomicBool,
    /// Taken to let go of the exclusive lock, and by a reader for as long as it reads without
    /// an OS lock of its own because this process holds the exclusive one: once the lock is
    /// gone, another process may append a batch it will still cut back out.
    release: Mutex<()>,
    /// Where this process's batch in flight starts, `u64::MAX` if none is.
    appending_from: AtomicU64,
}

/// The journal's OS lock, held while it lives.
#[derive(Debug)]
pub(crate) struct Locked {
    journal: Arc<JournalFile>,
    held: Option<sys::Held>,
}

impl Locked {
    /// The locked journal.
    pub(crate) fn journal(&self) -> &Arc<JournalFile> {
        &self.journal
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _release = self.journal.release();
        self.journal.held.store(false, Ordering::SeqCst);
        if let Some(held) = self.held.take() {
            let _ = sys::unlock_journal(&self.journal.file, held);
        }
    }
}

/// The journal's shared OS lock, taken by a reader through an open of the file of its own,
/// held while it lives (closing that file releases it).
#[derive(Debug)]
pub(crate) struct ReadLocked {
    _file: File,
    _held: sys::Held,
}

/// Marks a batch in flight from an offset until dropped ([`JournalFile::appending_from`]).
#[derive(Debug)]
pub(crate) struct Appending<'a> {
    journal: &'a JournalFile,
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.journal
            .appending_from
            .store(u64::MAX, Ordering::SeqCst);
    }
}

impl JournalFile {
    /// Opens the journal at `path` for reading and appending, creating it (mode 0600, empty)
    /// if `create` is set.
    pub(crate) fn open(path: &Path, create: bool) -> io::Result<JournalFile> {
        JournalFile::open_as(path, path, create)
    }

    /// Opens the file at `file` as the journal that will be named `path` (a new journal
    /// still under its temp name, about to be renamed into place).
    pub(crate) fn open_as(file_path: &Path, path: &Path, create: bool) -> io::Result<JournalFile> {
        let file = crate::sys::open_regular(
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(create)
                .mode(0o600),
            file_path,
        )?;
        let meta = file.metadata()?;
        let id = (meta.dev(), meta.ino());
        Ok(JournalFile {
            path: path.to_path_buf(),
            file,
            id,
            held: AtomicBool::new(false),
            release: Mutex::new(()),
            appending_from: AtomicU64::new(u64::MAX),
        })
    }

    /// Takes the exclusive OS lock, blocking until it is free, for at most `timeout` (then
    /// [`io::ErrorKind::TimedOut`]); `waiting` is called once if it is held.
    pub(crate) fn lock(
        self: &Arc<Self>,
        timeout: Duration,
        waiting: &dyn Fn(),
    ) -> io::Result<Locked> {
        let held = sys::lock_journal(&self.file, JournalLock::Exclusive, timeout, waiting)?;
        self.held.store(true, Ordering::SeqCst);
        Ok(Locked {
            journal: self.clone(),
            held: Some(held),
        })
    }

    /// Takes the shared OS lock for a reader, blocking while a writer (in any process) holds
    /// the exclusive one (at most one batch's write and fsync, or a compaction's swap), for
    /// at most `timeout`. Never call it while this process holds the exclusive lock
    /// ([`JournalFile::read_while_held`]).
    pub(crate) fn lock_shared(
        &self,
        timeout: Duration,
        waiting: &dyn Fn(),
    ) -> io::Result<ReadLocked> {
        let file = match sys::reopen(&self.file) {
            Ok(file) => file,
            // Where a file cannot be opened again by its descriptor, by its path, which only
            // helps while it still names this file.
            Err(_) => {
                let file = File::open(&self.path)?;
                let meta = file.metadata()?;
                if (meta.dev(), meta.ino()) != self.id {
                    return Err(io::Error::other(
                        "the journal was replaced while a reader was locking it",
                    ));
                }
                file
            }
        };
        let held = sys::lock_journal(&file, JournalLock::Shared, timeout, waiting)?;
        Ok(ReadLocked {
            _file: file,
            _held: held,
        })
    }

    /// Runs `read` if this process holds the exclusive lock, keeping the lock from being let
    /// go until it returns, and hands it where this process's batch in flight starts, if one
    /// is: the bytes before it are final. `None` if this process does not hold the lock.
    ///
    /// Call it with the view's lock held: the writer marks a batch in flight under that lock,
    /// so none starts while `read` runs. The writer may take the view's lock while it holds
    /// the journal's, so `read` must not wait for anything the writer holds but that.
    pub(crate) fn read_while_held<T>(&self, read: impl FnOnce(Option<u64>) -> T) -> Option<T> {
        let _release = self.release();
        if !self.held.load(Ordering::SeqCst) {
            return None;
        }
        #[cfg(test)]
        crate::hooks::reached(crate::hooks::Point::ReadingWhileHeld, &self.path);
        Some(read(self.appending_from()))
    }

    fn release(&self) -> MutexGuard<'_, ()> {
        // The guard guards no data, so a panic while it was held left nothing half-done.
        self.release.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks this process's batch as in flight from `offset` until the mark is dropped; set
    /// under the exclusive lock and the view's lock, before the batch's first byte is written.
    pub(crate) fn appending(&self, offset: u64) -> Appending<'_> {
        self.appending_from.store(offset, Ordering::SeqCst);
        Appending { journal: self }
    }

    /// Where this process's batch in flight starts, if one is: the bytes before it are final
    /// while this process holds the exclusive lock.
    pub(crate) fn appending_from(&self) -> Option<u64> {
        Some(self.appending_from.load(Ordering::SeqCst)).filter(|&at| at != u64::MAX)
    }

    /// True if the path still names this file (no compaction has replaced it).
    pub(crate) fn is_current(&self) -> io::Result<bool> {
        match fs::metadata(&self.path) {
            Ok(meta) => Ok((meta.dev(), meta.ino()) == self.id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The file's length now.
    pub(crate) fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Every byte from `offset` to the end.
    ///
    /// Positional reads (`pread`): a reader's catch-up and a compaction may read the same
    /// open file at once, and a shared file position would send one of them to the other's
    /// offset.
    pub(crate) fn read_from(&self, offset: u64) -> io::Result<Vec<u8>> {
        self.read_range(offset, u64::MAX)
    }

    /// Every byte from `offset` up to `end` or the end of the file, whichever comes first.
    pub(crate) fn read_range(&self, offset: u64, end: u64) -> io::Result<Vec<u8>> {
        let len = self.len()?.min(end);
        let mut bytes =
            Vec::with_capacity(usize::try_from(len.saturating_sub(offset)).unwrap_or(0));
        let mut chunk = vec![0; 64 * 1024];
        let mut at = offset;
        loop {
            let room = usize::try_from(end.saturating_sub(at)).unwrap_or(usize::MAX);
            let want = chunk.len().min(room);
            match self.file.read_at(&mut chunk[..want], at) {
                Ok(0) => return Ok(bytes),
                Ok(n) => {
                    bytes.extend_from_slice(&chunk[..n]);
                    at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Copies the whole lines from `offset` up to `end` or the end of the file (up to and
    /// including the last `\n`; bytes after it are a torn tail) to `out`, 64 KiB at a time;
    /// returns the bytes and lines copied.
    pub(crate) fn copy_lines_from(
        &self,
        offset: u64,
        end: Option<u64>,
        out: &mut dyn Write,
    ) -> io::Result<(u64, usize)> {
        let mut chunk = vec![0; 64 * 1024];
        let mut cut = offset;
        let mut end = self.len()?.min(end.unwrap_or(u64::MAX));
        while end > offset {
            let start = end.saturating_sub(chunk.len() as u64).max(offset);
            let buf = &mut chunk[..usize::try_from(end - start).unwrap_or(0)];
            self.file.read_exact_at(buf, start)?;
            if let Some(last) = buf.iter().rposition(|&b| b == b'\n') {
                cut = start + last as u64 + 1;
                break;
            }
            end = start;
        }
        let mut at = offset;
        let mut lines = 0;
        while at < cut {
            let n = usize::try_from(cut - at)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            let buf = &mut chunk[..n];
            self.file.read_exact_at(buf, at)?;
            lines += buf.iter().filter(|&&b| b == b'\n').count();
            out.write_all(buf)?;
            at += n as u64;
        }
        Ok((cut - offset, lines))
    }

    /// Appends `bytes` with one `write` where the kernel allows (and more only after a short
    /// write).
    pub(crate) fn append(&self, bytes: &[u8]) -> io::Result<()> {
        (&self.file).write_all(bytes)
    }

    /// Cuts the file back to `len` bytes (a failed append's leftovers, a torn tail).
    pub(crate) fn truncate(&self, len: u64) -> io::Result<()> {
        #[cfg(test)]
        if faults::planted(faults::Fault::Truncate, &self.path) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.file.set_len(len)
    }

    /// Flushes the file's data (and the metadata needed to read it) to the device.
    pub(crate) fn sync(&self) -> io::Result<()> {
        #[cfg(test)]
        if faults::planted(faults::Fault::Sync, &self.path) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.file.sync_data()
    }
}

/// Failures planted by the crate's unit tests, by journal path.
#[cfg(test)]
pub(crate) mod faults {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    /// What fails.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// Every fsync of the journal.
        Sync,
        /// Every truncate of the journal.
        Truncate,
        /// Every write of the journal's fence file.
        Fence,
    }

    static PLANTED: Mutex<Vec<(Fault, PathBuf)>> = Mutex::new(Vec::new());

    /// Makes `fault` happen (with `EIO`) to the journal at `path`, or stop happening.
    pub(crate) fn plant(fault: Fault, path: &Path, yes: bool) {
        let mut planted = PLANTED.lock().unwrap();
        planted.retain(|(f, p)| (*f, p.as_path()) != (fault, path));
        if yes {
            planted.push((fault, path.to_path_buf()));
        }
    }

    pub(crate) fn planted(fault: Fault, path: &Path) -> bool {
        PLANTED
            .lock()
            .unwrap()
            .iter()
            .any(|(f, p)| *f == fault && p == path)
    }
}

/// Flushes a directory, so that a rename or a new name in it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reader's shared lock is its own: when one of two readers in a process lets go, the
    /// other still keeps writers out. They used to share one open of the file, whose lock the
    /// first to let go released for both.
    #[test]
    fn one_reader_letting_go_does_not_unlock_another() {
        let dir = sessionkit_test_support::Scratch::new("files-readers");
        let path = dir.join("journal");
        let journal = JournalFile::open(&path, true).unwrap();
        let writer = File::open(&path).unwrap();
        let long = Duration::from_secs(300);
        let first = journal.lock_shared(long, &|| {}).unwrap();
        let second = journal.lock_shared(long, &|| {}).unwrap();
        drop(first);
        let blocked = sys::lock_journal(&writer, JournalLock::Exclusive, Duration::ZERO, &|| {});
        let err = blocked.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        drop(second);
        let held = sys::lock_journal(&writer, JournalLock::Exclusive, Duration::ZERO, &|| {});
        assert!(held.is_ok(), "{held:?}");
    }

    #[test]
    fn copy_lines_from_stops_at_the_last_whole_line() {
        let dir = sessionkit_test_support::Scratch::new("files-copy");
        let path = dir.join("j");
        // A torn tail longer than one chunk, so the search for the last newline crosses chunks.
        let mut text = b"a\nbb\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 70_000));
        fs::write(&path, &text).unwrap();
        let journal = JournalFile::open(&path, false).unwrap();
        let mut out = Vec::new();
        assert_eq!(journal.copy_lines_from(0, None, &mut out).unwrap(), (5, 2));
        assert_eq!(out, b"a\nbb\n");
        out.clear();
        assert_eq!(journal.copy_lines_from(2, None, &mut out).unwrap(), (3, 1));
        assert_eq!(out, b"bb\n");
        out.clear();
        assert_eq!(journal.copy_lines_from(5, None, &mut out).unwrap(), (0, 0));
        assert!(out.is_empty());
        // An end stops the copy there (a fence), at its last whole line.
        assert_eq!(
            journal.copy_lines_from(0, Some(2), &mut out).unwrap(),
            (2, 1)
        );
        assert_eq!(out, b"a\n");
        out.clear();
        assert_eq!(
            journal.copy_lines_from(0, Some(4), &mut out).unwrap(),
            (2, 1)
        );
        out.clear();
        // Lines longer than a chunk are copied whole.
        let long: Vec<u8> = std::iter::repeat_n(b'y', 150_000).chain(*b"\nz").collect();
        fs::write(&path, &long).unwrap();
        let journal = JournalFile::open(&path, false).unwrap();
        assert_eq!(
            journal.copy_lines_from(0, None, &mut out).unwrap(),
            (150_001, 1)
        );
        assert_eq!(out, &long[..150_001]);
    }
}
