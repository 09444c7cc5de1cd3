//! Reading a store without changing it: for tools (`sessionkit store get|list|stats|check`),
//! read-only mounts, and anyone who must not repair what they look at.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Operation, Result};
use crate::fence::{Fence, FencedBatch};
use crate::journal::{SeqTracker, TornTail, parse_journal};
use crate::snapshot::parse_snapshot;
use crate::state::State;
use crate::store::journal_path_for;
use crate::sys::JournalLock;

/// The bytes of a store's two files, read as one consistent pair.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreFiles {
    /// The snapshot's path.
    pub snapshot_path: PathBuf,
    /// The journal's path.
    pub journal_path: PathBuf,
    /// The snapshot's bytes; `None` if there is no snapshot.
    pub snapshot: Option<Vec<u8>>,
    /// The journal's bytes; `None` if there is no journal.
    pub journal: Option<Vec<u8>>,
    /// The bytes of the journal's fence file (`<journal>.fence`), read under the same lock;
    /// `None` if there is none (the usual case). See [`FencedBatch`].
    pub fence: Option<Vec<u8>>,
}

/// A store loaded from its files without changing them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadedStore {
    /// The entries: the snapshot with the journal's whole records replayed over it.
    pub state: State,
    /// The snapshot's size (0 if there is none).
    pub snapshot_bytes: u64,
    /// The journal's size, a torn tail included (0 if there is none).
    pub journal_bytes: u64,
    /// The journal records applied (a record seen twice is skipped, as at open).
    pub journal_records: usize,
    /// A torn journal tail, left in place (only whole records count).
    pub torn_tail: Option<TornTail>,
    /// A failed batch that a fence keeps from readers, left in place and not applied.
    pub fenced_batch: Option<FencedBatch>,
}

/// Reads the snapshot at `snapshot_path` and its journal without changing either, and without
/// needing write permission.
///
/// The journal is read under a shared OS lock: writers append and compactions swap the files
/// under its exclusive lock, so the pair is never half swapped and no live writer's append is
/// half written. If the journal was replaced while this waited for its lock, it starts again
/// with the new one. It waits for the lock for at most
/// [`DEFAULT_LOCK_TIMEOUT`](crate::DEFAULT_LOCK_TIMEOUT).
///
/// # Errors
///
/// [`Error::NoStore`] if neither file exists; [`Error::Io`] if one cannot be opened, locked or
/// read ([`Error::is_timeout`] if the lock was held past the timeout).
pub fn read_store_files(snapshot_path: impl AsRef<Path>) -> Result<StoreFiles> {
    let path = snapshot_path.as_ref();
    let journal_path = journal_path_for(path);
    let failed = |step, subject: &Path, e| Error::io(Operation::Read, step, path, subject, e);
    loop {
        let mut journal =
            match crate::sys::open_regular(fs::OpenOptions::new().read(true), &journal_path) {
                Ok(file) => Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(failed("open", &journal_path, e)),
            };
        // Held until the files are read; dropping it and the file unlocks.
        let _held = match &journal {
            Some(file) => {
                let held = crate::sys::lock_journal(
                    file,
                    JournalLock::Shared,
                    crate::DEFAULT_LOCK_TIMEOUT,
                    &|| {},
                )
                .map_err(|e| failed("lock", &journal_path, e))?;
                if !same_file(file, &journal_path).map_err(|e| failed("stat", &journal_path, e))? {
                    // A compaction put a new journal in place.
                    continue;
                }
                Some(held)
            }
            None => None,
        };
        let snapshot = match crate::sys::open_regular(fs::OpenOptions::new().read(true), path)
            .and_then(|mut file| {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map(|_| bytes)
            }) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(failed("read", path, e)),
        };
        let journal = match &mut journal {
            Some(file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)
                    .map_err(|e| failed("read", &journal_path, e))?;
                Some(bytes)
            }
            None if snapshot.is_none() => {
                return Err(Error::NoStore {
                    op: Operation::Read,
                    path: path.to_path_buf(),
                    journal: journal_path,
                });
            }
            None => None,
        };
        let fence_path = crate::fence::path_for(&journal_path);
        let fence = crate::fence::read(&fence_path).map_err(|e| failed("read", &fence_path, e))?;
        return Ok(StoreFiles {
            snapshot_path: path.to_path_buf(),
            journal_path,
            snapshot,
            journal,
            fence,
        });
    }
}

impl StoreFiles {
    /// The failed batch at the end of the journal that its fence keeps from readers, if the
    /// fence holds; `None` if there is no fence, or it is stale.
    ///
    /// # Errors
    ///
    /// [`Error::CorruptJournal`] if the fence file is not a fence;
    /// [`Error::UnsupportedJournal`] if it is a fence of a newer format.
    pub fn fenced_batch(&self) -> Result<Option<FencedBatch>> {
        let (Some(file), Some(journal)) = (&self.fence, &self.journal) else {
            return Ok(None);
        };
        let fence = Fence::parse(&crate::fence::path_for(&self.journal_path), file)?;
        Ok(fence.end_of_file(journal).map(|offset| FencedBatch {
            offset,
            len: journal.len() as u64 - offset,
        }))
    }

    /// Parses the files and replays the journal's whole records over the snapshot, as opening
    /// the store would, but repairs nothing: a torn tail is reported and left, as is a failed
    /// batch behind a fence ([`fenced_batch`](StoreFiles::fenced_batch)), which is not applied.
    ///
    /// # Errors
    ///
    /// [`Error::CorruptSnapshot`], [`Error::CorruptJournal`],
    /// [`Error::UnsupportedJournal`], or [`Error::MissingSnapshot`] if the snapshot is missing
    /// beside a journal that a compaction wrote.
    pub fn load(&self) -> Result<LoadedStore> {
        let mut state = match &self.snapshot {
            Some(bytes) => parse_snapshot(&self.snapshot_path, bytes)?,
            None => State::new(),
        };
        let mut journal_records = 0;
        let mut torn_tail = None;
        let fenced_batch = self.fenced_batch()?;
        if let Some(bytes) = &self.journal {
            let end = fenced_batch.map_or(bytes.len(), |f| f.offset as usize);
            let parsed = parse_journal(&self.journal_path, &bytes[..end])?;
            crate::snapshot::expect_snapshot(
                &self.snapshot_path,
                self.snapshot.is_some(),
                &self.journal_path,
                parsed.header.as_ref(),
            )?;
            journal_records = state
                .replay(&parsed.records, &mut SeqTracker::new())
                .applied;
            torn_tail = parsed.torn_tail;
        }
        let len = |bytes: &Option<Vec<u8>>| bytes.as_ref().map_or(0, |b| b.len() as u64);
        Ok(LoadedStore {
            state,
            snapshot_bytes: len(&self.snapshot),
            journal_bytes: len(&self.journal),
            journal_records,
            torn_tail,
            fenced_batch,
        })
    }
}

/// Reads and loads the store at `snapshot_path` without changing anything
/// ([`read_store_files`], then [`StoreFiles::load`]).
///
/// # Errors
///
/// As those two.
pub fn load_store(snapshot_path: impl AsRef<Path>) -> Result<LoadedStore> {
    read_store_files(snapshot_path)?.load()
}

/// True if `path` still names the open file `file` (same device and inode).
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(now) => Ok(open.dev() == now.dev() && open.ino() == now.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
