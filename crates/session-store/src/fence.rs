//! A fence over a failed batch that could not be taken back out of the journal.
//!
//! A batch whose write or fsync fails is truncated back out of the journal before its callers
//! hear that it failed; in the durable mode ([`SyncMode::EveryBatch`](crate::SyncMode)) the cut
//! is fsynced too, since another file's fsync may have made the batch's bytes durable already.
//! If that truncate (or that fsync) fails as well, the batch's bytes stay in the file, or may
//! come back after a power cut, and a reader would apply updates whose callers were told they
//! failed. So the writer, still
//! holding the journal's exclusive lock, writes a fence beside the journal
//! (`sessions.json.journal.fence`, atomically and durably) naming where the batch starts, and
//! every reader of that journal stops there: this process's and other processes' catch-ups,
//! opens, reloads, compactions and the read-only loader. The next writer to take the lock cuts
//! the bytes, fsyncs the cut and removes the fence; a compaction leaves them out of its new
//! journal; an open cuts them too. If the fence cannot be written either, nothing fences the
//! batch: its callers hear that its outcome is unknown ([`Error::BatchOutcomeUnknown`]), since
//! once the lock is let go any reader may apply it.
//!
//! A fence names the journal's epoch and the failed batch's first record (writer and seq). One
//! that outlived its batch (its removal lost to a power cut after the cut was fsynced, then the
//! journal grew again, or a compaction replaced the journal) is stale and hides nothing: a fence
//! holds only while the line at its offset is that record, or not a whole valid record at all
//! (the torn or garbled bytes of the write that failed).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sessionkit_atomic_fs::{AtomicWriter, Durability};

use crate::error::{Error, JournalProblem, Operation, Result};
use crate::journal::{WriterId, decode_record, header_epoch};
use crate::store::Shared;

/// The fence format version this crate writes and reads.
const FENCE_VERSION: u64 = 1;

/// Where a failed batch starts in the journal of one epoch, and its first record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fence {
    /// The epoch of the journal the batch is in.
    pub(crate) epoch: u64,
    /// The byte offset where the batch starts: readers stop here.
    pub(crate) offset: u64,
    /// The writer of the batch's first record.
    pub(crate) writer: WriterId,
    /// The seq of the batch's first record.
    pub(crate) seq: u64,
}

/// The bytes of a journal that a fence keeps every reader from: a failed batch, left in the
/// file because it could not be cut back out, that the next writer or open cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct FencedBatch {
    /// Where the failed batch starts.
    pub offset: u64,
    /// How many bytes of it are in the file.
    pub len: u64,
}

#[derive(Deserialize)]
struct RawFence {
    epoch: u64,
    offset: u64,
    writer: String,
    seq: u64,
}

impl Fence {
    /// The fence file's whole content: one JSON line.
    pub(crate) fn encode_line(&self) -> String {
        format!(
            "{{\"sessionkitFence\":{FENCE_VERSION},\"epoch\":{},\"offset\":{},\"writer\":\"{}\",\"seq\":{}}}\n",
            self.epoch, self.offset, self.writer, self.seq
        )
    }

    /// Parses a fence file's bytes; `path` only names the file in errors. Never panics.
    ///
    /// A fence that cannot be read is reported as a corrupt journal (the fence is part of the
    /// journal's state), never ignored: ignoring it could let readers apply a failed batch.
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Fence> {
        let corrupt = |source| Error::CorruptJournal {
            path: path.to_path_buf(),
            line: 1,
            offset: 0,
            problem: JournalProblem::BadFence,
            source,
        };
        // The version alone first, so that a newer fence with other fields is reported as
        // such, not as damage that `recover` would rename aside.
        #[derive(Deserialize)]
        struct Version {
            #[serde(rename = "sessionkitFence")]
            version: u64,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(|e| corrupt(Some(e)))?;
        if version.version != FENCE_VERSION {
            return Err(Error::UnsupportedJournal {
                path: path.to_path_buf(),
                version: version.version,
            });
        }
        let raw: RawFence = serde_json::from_slice(bytes).map_err(|e| corrupt(Some(e)))?;
        let writer = raw.writer.parse().map_err(|_| corrupt(None))?;
        Ok(Fence {
            epoch: raw.epoch,
            offset: raw.offset,
            writer,
            seq: raw.seq,
        })
    }

    /// Where readers of a journal of `epoch` stop, if this fence holds over `bytes`: the
    /// journal's bytes from offset `base` up to its end. `None` if the fence is stale (another
    /// epoch, an offset before `base` or at or past the end, the header's or not the start of a
    /// line, a whole valid record other than the batch's first at its offset, or a whole valid
    /// record after it of another writer, or of a seq not past the one before it).
    pub(crate) fn end_in(&self, epoch: u64, bytes: &[u8], base: u64) -> Option<u64> {
        // Offset 0 is the header, never a batch: a fence naming it is damaged, and holding it
        // would cut every record of the journal.
        if epoch != self.epoch || self.offset < base || self.offset == 0 {
            return None;
        }
        let at = usize::try_from(self.offset - base).ok()?;
        if at >= bytes.len() || (at > 0 && bytes[at - 1] != b'\n') {
            return None;
        }
        let rest = &bytes[at..];
        let Some(end) = rest.iter().rposition(|&b| b == b'\n') else {
            // A torn line: the failed write stopped part way.
            return Some(self.offset);
        };
        // From the offset to the end, only the batch's records (its first at the offset, then
        // this writer's later seqs) or bytes that are no record at all (a write that failed
        // may leave anything). A record of another writer, or of an earlier seq, means the
        // journal went on past the batch: the fence is stale (its removal was lost to a power
        // cut, say), and holding it over a damaged line would hide records acknowledged since.
        let mut last = None;
        for (n, line) in rest[..end].split(|&b| b == b'\n').enumerate() {
            let Ok(record) = decode_record(line) else {
                continue;
            };
            let in_turn = if n == 0 {
                record.seq == self.seq
            } else {
                record.seq > last.unwrap_or(self.seq)
            };
            if record.writer != self.writer || !in_turn {
                return None;
            }
            last = Some(record.seq);
        }
        Some(self.offset)
    }

    /// Where readers of a whole journal file's `bytes` stop, if this fence holds over them.
    pub(crate) fn end_of_file(&self, bytes: &[u8]) -> Option<u64> {
        self.end_in(header_epoch(bytes)?, bytes, 0)
    }
}

/// The fence file of the journal at `journal_path`: `<journal>.fence`.
pub(crate) fn path_for(journal_path: &Path) -> PathBuf {
    let mut name = journal_path.as_os_str().to_owned();
    name.push(".fence");
    PathBuf::from(name)
}

/// The fence file's bytes, or `None` if there is none.
pub(crate) fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    match crate::sys::open_regular(fs::OpenOptions::new().read(true), path)
        .and_then(|mut file| io::Read::read_to_end(&mut file, &mut bytes))
    {
        Ok(_) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the fence file; true if there was one.
pub(crate) fn remove(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The fence over `shared`'s journal, if its file exists. Every reader, this process's
/// included, goes by the file alone: only the file is seen by every process, and removed by
/// whichever of them cuts the batch.
pub(crate) fn current(shared: &Shared, op: Operation) -> Result<Option<Fence>> {
    let path = path_for(&shared.journal_path);
    match read(&path) {
        Ok(Some(bytes)) => Fence::parse(&path, &bytes).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(Error::io(
            op,
            "read the fence",
            &shared.snapshot_path,
            &path,
            e,
        )),
    }
}

/// Fences off a failed batch that starts at `fence.offset` and could not be cut back out.
/// Called with the journal's exclusive lock held, so that no reader gets past the batch before
/// the fence is in place. If this fails, nothing fences the batch: once the lock is let go,
/// any reader may apply it, and no writer may cut it any more (another may have written after
/// it).
pub(crate) fn put_up(shared: &Shared, fence: Fence) -> std::result::Result<(), Error> {
    let path = path_for(&shared.journal_path);
    #[cfg(test)]
    if crate::files::faults::planted(crate::files::faults::Fault::Fence, &shared.journal_path) {
        return Err(Error::io(
            Operation::WriteJournal,
            "write the fence",
            &shared.snapshot_path,
            &path,
            io::Error::from_raw_os_error(libc::EIO),
        ));
    }
    AtomicWriter::new()
        .durability(Durability::Durable)
        .write(&path, fence.encode_line().as_bytes())
        .map_err(|source| Error::AtomicWrite {
            op: Operation::WriteJournal,
            step: "write the fence",
            path,
            source,
        })
}

/// After the writer cut the journal back to where its readers stood (`cut`), takes down a
/// fence, if there is one: fsyncs the cut first, so that a fence is never gone while the bytes
/// it hid may come back after a power cut. Called with the journal's exclusive lock held;
/// makes no syscall if `cut` is false. A failed fsync here is a failed fsync of the journal
/// ([`Shared::fsync_failed`]), and leaves the fence up.
pub(crate) fn take_down(
    shared: &Shared,
    journal: &crate::files::JournalFile,
    cut: bool,
) -> Result<()> {
    let path = path_for(&shared.journal_path);
    if !cut || !path.exists() {
        return Ok(());
    }
    let io = |step, subject: &Path, e| {
        Error::io(
            Operation::WriteJournal,
            step,
            &shared.snapshot_path,
            subject,
            e,
        )
    };
    if let Err(e) = journal.sync() {
        shared.fsync_failed();
        return Err(io("fsync the cut", &shared.journal_path, e));
    }
    if remove(&path).map_err(|e| io("remove the fence", &path, e))? {
        tracing::info!(path = %shared.journal_path.display(),
            "cut a fenced failed batch out of the journal and removed its fence");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Record;
    use proptest::prelude::*;

    const W: WriterId = WriterId::new(0x9f1c_2a7b_e0d3_4c55);

    fn line(seq: u64, writer: WriterId) -> String {
        Record::delete(seq, writer, format!("k{seq}")).encode()
    }

    fn journal(epoch: u64, records: &[(u64, WriterId)]) -> Vec<u8> {
        let mut text = crate::journal::JournalHeader::new(epoch).encode_line();
        for &(seq, writer) in records {
            text.push_str(&line(seq, writer));
            text.push('\n');
        }
        text.into_bytes()
    }

    #[test]
    fn a_fence_round_trips_through_its_file_format() {
        let fence = Fence {
            epoch: 7,
            offset: 1234,
            writer: W,
            seq: 12,
        };
        assert_eq!(
            fence.encode_line(),
            "{\"sessionkitFence\":1,\"epoch\":7,\"offset\":1234,\"writer\":\"9f1c2a7be0d34c55\",\"seq\":12}\n"
        );
        assert_eq!(
            Fence::parse(Path::new("f"), fence.encode_line().as_bytes()).unwrap(),
            fence
        );
    }

    #[test]
    fn a_fence_of_another_version_or_garbage_is_an_error_naming_the_file() {
        let newer = Fence::parse(
            Path::new("j.fence"),
            br#"{"sessionkitFence":2,"epoch":1,"offset":1,"writer":"9f1c2a7be0d34c55","seq":1}"#,
        )
        .unwrap_err();
        assert!(newer.is_unsupported(), "{newer}");
        // A newer fence may have other fields: still unsupported, never called damage.
        let reshaped =
            Fence::parse(Path::new("j.fence"), br#"{"sessionkitFence":2,"at":[1,2]}"#).unwrap_err();
        assert!(reshaped.is_unsupported(), "{reshaped}");
        for bad in [
            &b""[..],
            b"{}",
            br#"{"sessionkitFence":1,"epoch":1,"offset":1,"writer":"XYZ","seq":1}"#,
        ] {
            let err = Fence::parse(Path::new("j.fence"), bad).unwrap_err();
            assert!(err.is_corrupt(), "{err}");
            assert_eq!(err.path(), Some(Path::new("j.fence")));
        }
    }

    #[test]
    fn a_fence_holds_over_its_own_record_a_torn_line_or_garbage_and_nothing_else() {
        let other = WriterId::new(1);
        let bytes = journal(3, &[(1, other), (5, W), (6, W)]);
        let header_len = crate::journal::JournalHeader::new(3).encode_line().len() as u64;
        let second = header_len + line(1, other).len() as u64 + 1;
        let fence = |epoch, offset, seq| Fence {
            epoch,
            offset,
            writer: W,
            seq,
        };
        assert_eq!(fence(3, second, 5).end_of_file(&bytes), Some(second));
        // Another epoch, another record, past the end, not a line start: stale.
        assert_eq!(fence(4, second, 5).end_of_file(&bytes), None);
        assert_eq!(fence(3, second, 6).end_of_file(&bytes), None);
        assert_eq!(fence(3, header_len, 1).end_of_file(&bytes), None);
        assert_eq!(fence(3, bytes.len() as u64, 5).end_of_file(&bytes), None);
        assert_eq!(fence(3, second + 1, 5).end_of_file(&bytes), None);
        // The header's offset: no batch starts there, whatever the bytes.
        assert_eq!(fence(3, 0, 5).end_of_file(&bytes), None);
        let mut garbled = bytes.clone();
        garbled[1] = b'#';
        assert_eq!(fence(3, 0, 5).end_in(3, &garbled, 0), None);
        // Torn or garbled bytes at the offset: the failed write's.
        let mut torn = bytes[..second as usize].to_vec();
        torn.extend_from_slice(b"{\"seq\":5,\"wri");
        assert_eq!(fence(3, second, 5).end_of_file(&torn), Some(second));
        let mut zeros = bytes[..second as usize].to_vec();
        zeros.extend_from_slice(&[0; 40]);
        zeros.push(b'\n');
        assert_eq!(fence(3, second, 5).end_of_file(&zeros), Some(second));
        // Garbage at the offset, then the batch's later records: it holds.
        let mut failed = zeros.clone();
        failed.extend_from_slice(format!("{}\n", line(6, W)).as_bytes());
        assert_eq!(fence(3, second, 5).end_of_file(&failed), Some(second));
        // Garbage at the offset, then another writer's record, or this writer's earlier one:
        // the journal went on past the batch, and the fence is stale.
        for (seq, writer) in [(6, other), (4, W), (5, W)] {
            let mut later = zeros.clone();
            later.extend_from_slice(format!("{}\n", line(seq, writer)).as_bytes());
            assert_eq!(fence(3, second, 5).end_of_file(&later), None, "{seq}");
        }
        // Read from the fence's own offset, as a catch-up that stopped there does.
        assert_eq!(
            fence(3, second, 5).end_in(3, &bytes[second as usize..], second),
            Some(second)
        );
        assert_eq!(
            fence(3, second, 5).end_in(3, &bytes[second as usize + 1..], second + 1),
            None
        );
    }

    proptest! {
        /// Any bytes as a fence file give a fence or an error, never a panic; and any fence
        /// over any bytes gives an end inside them or none.
        #[test]
        fn fences_never_panic_and_never_point_outside_the_bytes(
            file in proptest::collection::vec(any::<u8>(), 0..120),
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            epoch in 0u64..3,
            offset in 0u64..220,
            base in 0u64..40,
            seq in 0u64..4,
        ) {
            let _ = Fence::parse(Path::new("f"), &file);
            let fence = Fence { epoch, offset, writer: W, seq };
            if let Some(end) = fence.end_in(epoch, &bytes, base) {
                prop_assert!(end >= base && end < base + bytes.len() as u64);
                prop_assert_eq!(end, offset);
            }
            let _ = fence.end_of_file(&bytes);
        }

        /// Over a journal of whole records, a fence hides the records from its offset on only
        /// if the first of them is the one it names and the rest are its writer's, in order: a
        /// stale fence never hides a record.
        #[test]
        fn a_fence_hides_records_only_from_the_one_it_names(
            records in proptest::collection::vec((1u64..6, any::<bool>()), 1..12),
            at in 0usize..12,
            seq in 1u64..6,
            mine in any::<bool>(),
        ) {
            let writer_of = |w: bool| if w { W } else { WriterId::new(2) };
            let list: Vec<(u64, WriterId)> =
                records.iter().map(|&(s, w)| (s, writer_of(w))).collect();
            let bytes = journal(1, &list);
            let parsed = crate::journal::parse_journal(Path::new("j"), &bytes).unwrap();
            let at = at % parsed.records.len();
            let offset = parsed.records[at].offset;
            let fence = Fence { epoch: 1, offset, writer: writer_of(mine), seq };
            let named = parsed.records[at].record.seq == seq
                && parsed.records[at].record.writer == writer_of(mine);
            let batch = parsed.records[at..].windows(2).all(|pair| {
                pair[1].record.writer == writer_of(mine) && pair[1].record.seq > pair[0].record.seq
            });
            prop_assert_eq!(fence.end_of_file(&bytes), (named && batch).then_some(offset));
        }
    }
}
