//! Fingerprints of a target and the log of writes published through this process's guards,
//! which resume checks a suspended lock against.
//!
//! A fingerprint is the file's identity, its length and a checksum of its last 4 KiB: no
//! modification times. While some guard of a target is suspended, every guarded write to that
//! target records its before and after fingerprints; resume accepts a change only if a chain
//! of such writes leads from the suspended state to the current one.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::error::Takeover;

/// How many bytes at the end of the target the checksum covers.
const TAIL: u64 = 4096;
/// How many published writes are kept per target; a longer suspension is checked against the
/// last ones only, and a gap counts as a takeover (never the other way round).
const LOG_LEN: usize = 1024;

/// The state of a target file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// `None` when the file does not exist.
    identity: Option<(u64, u64)>,
    pub(crate) len: Option<u64>,
    tail: u64,
}

impl Fingerprint {
    fn describe_change(&self, found: &Fingerprint) -> String {
        match (self.identity, found.identity) {
            (Some(_), None) => "the file was removed".to_owned(),
            (None, Some(_)) => "the file was created".to_owned(),
            (Some(a), Some(b)) if a != b => "the file was replaced".to_owned(),
            _ if self.len != found.len => "the length changed".to_owned(),
            _ => "the content of its last 4 KiB changed".to_owned(),
        }
    }
}

/// Reads the fingerprint of `path`.
pub(crate) fn fingerprint(path: &Path) -> io::Result<Fingerprint> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Fingerprint {
                identity: None,
                len: None,
                tail: 0,
            });
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let len = meta.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut buf)?;
    Ok(Fingerprint {
        identity: Some(sessionkit_atomic_fs::file_identity(&meta)),
        len: Some(len),
        tail: fnv1a(&buf),
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug, Default)]
struct Watch {
    suspended: usize,
    next_seq: u64,
    log: VecDeque<(u64, Fingerprint, Fingerprint)>,
}

fn watches() -> MutexGuard<'static, HashMap<PathBuf, Watch>> {
    static WATCHES: OnceLock<Mutex<HashMap<PathBuf, Watch>>> = OnceLock::new();
    WATCHES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Starts watching `target` for a suspension; returns the sequence number to verify from.
pub(crate) fn watch(target: &Path) -> u64 {
    let mut watches = watches();
    let watch = watches.entry(target.to_path_buf()).or_default();
    watch.suspended += 1;
    watch.next_seq
}

/// Ends one suspension's watch of `target`.
pub(crate) fn unwatch(target: &Path) {
    let mut watches = watches();
    if let Some(watch) = watches.get_mut(target) {
        watch.suspended = watch.suspended.saturating_sub(1);
        if watch.suspended == 0 {
            watches.remove(target);
        }
    }
}

/// True while some suspension of `target` is not yet resumed or dropped.
#[cfg(all(test, feature = "tokio"))]
pub(crate) fn is_watched(target: &Path) -> bool {
    watches().contains_key(target)
}

/// The fingerprint before a guarded write, taken only while some suspension watches `target`.
pub(crate) fn before_write(target: &Path) -> Option<Fingerprint> {
    if !watches().contains_key(target) {
        return None;
    }
    fingerprint(target).ok()
}

/// Publishes a guarded write's before and after fingerprints.
pub(crate) fn after_write(target: &Path, before: Option<Fingerprint>) {
    let Some(before) = before else { return };
    let Ok(after) = fingerprint(target) else {
        return;
    };
    let mut watches = watches();
    if let Some(watch) = watches.get_mut(target) {
        let seq = watch.next_seq;
        watch.next_seq += 1;
        watch.log.push_back((seq, before, after));
        if watch.log.len() > LOG_LEN {
            watch.log.pop_front();
        }
    }
}

/// Checks that `target` went from `suspended` to `current` only through published writes
/// numbered `since` or later.
pub(crate) fn verify(
    target: &Path,
    suspended: Fingerprint,
    since: u64,
    current: Fingerprint,
) -> Result<(), Takeover> {
    let mut state = suspended;
    if let Some(watch) = watches().get(target) {
        for (_, before, after) in watch.log.iter().filter(|(seq, _, _)| *seq >= since) {
            if *before == state {
                state = *after;
            }
        }
    }
    if state == current {
        return Ok(());
    }
    Err(Takeover {
        expected_len: state.len,
        found_len: current.len,
        detail: state.describe_change(&current),
    })
}
