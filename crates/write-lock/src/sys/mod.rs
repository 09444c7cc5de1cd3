//! Platform code: the same functions on every platform, one file per platform.
//!
//! Linux is the tested platform: it answers process questions from `/proc` (no `unsafe`; libc
//! only for constants). The fallback keeps the crate compiling elsewhere; it cannot probe
//! processes, so locks there are judged only by their OS-lock promise and their age.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub(crate) use other::*;

use std::collections::hash_map::RandomState;
use std::fs::{File, OpenOptions, TryLockError};
use std::hash::BuildHasher;
use std::io;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The open flags for looking at a lock file: never through a symlink (the open fails with
/// `ELOOP`), never waiting for a FIFO's writer, never taking a terminal as the controlling one.
pub(crate) const OPEN_NOFOLLOW_NONBLOCK: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;

/// Opens a lock file to look at it, with [`OPEN_NOFOLLOW_NONBLOCK`], and where the platform
/// allows without updating its access time ([`OPEN_NOATIME`]): looking, as a sweep of
/// thousands of locks does, should not dirty each file's inode.
///
/// Linux refuses `O_NOATIME` with `EPERM` on a file of another user (unless privileged); such
/// a file is opened again without it.
pub(crate) fn open_to_observe(path: &Path) -> io::Result<File> {
    let open = |extra: i32| {
        OpenOptions::new()
            .read(true)
            .custom_flags(OPEN_NOFOLLOW_NONBLOCK | extra)
            .open(path)
    };
    match open(OPEN_NOATIME) {
        Err(e) if OPEN_NOATIME != 0 && e.raw_os_error() == Some(libc::EPERM) => open(0),
        opened => opened,
    }
}

/// Takes the exclusive OS lock on `file`, waiting for it: std's `File::lock`, which is
/// `flock(2)` on Linux (held by the open file description, dropped by the kernel when the
/// last descriptor closes, as at a crash) and `LockFileEx` on Windows.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
pub(crate) fn lock(file: &File) -> io::Result<()> {
    file.lock()
}

/// Takes the exclusive OS lock on `file` if it is free, as [`lock`] without waiting.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
pub(crate) fn try_lock(file: &File) -> Result<(), TryLockError> {
    file.try_lock()
}

/// True for the errors of an [`OPEN_NOFOLLOW_NONBLOCK`] open that mean the path is no regular
/// file: a symlink (`ELOOP`) or a socket (`ENXIO`).
pub(crate) fn is_not_openable_kind(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO))
}

/// 32 lowercase hex characters from 16 bytes of `/dev/urandom`, or from [`fallback_token`] where
/// that cannot be read (no such device, or a sandbox that hides it).
fn token_from_urandom_or_fallback() -> String {
    let mut bytes = [0u8; 16];
    match File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => hex(&bytes),
        Err(_) => fallback_token(),
    }
}

/// A token from std's randomly keyed hasher, for when no random device can be read.
///
/// Each `RandomState` is keyed from the operating system's randomness once per thread and then
/// varied, and the hashed input mixes a process-wide counter, the clock and the pid, so two
/// tokens never repeat and cannot be guessed without reading this process's memory. That is
/// unpredictable enough to tell owners apart; it is not a cryptographic random number.
fn fallback_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let pid = std::process::id();
    let high = RandomState::new().hash_one((n, nanos, pid, 0u8));
    let low = RandomState::new().hash_one((n, nanos, pid, 1u8));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    hex(&bytes)
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The file name of the running executable.
///
/// Linux names a replaced or deleted executable `<path> (deleted)`; the suffix is dropped so a
/// process upgraded in place still reports its program.
fn current_program_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    let name = name.strip_suffix(" (deleted)").unwrap_or(&name).to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_token(t: &str) -> bool {
        t.len() == 32
            && t.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    }

    #[test]
    fn hex_is_lowercase_and_ordered() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn tokens_are_32_hex_characters_and_differ() {
        let a = random_token();
        let b = random_token();
        assert!(is_token(&a), "{a}");
        assert!(is_token(&b), "{b}");
        assert_ne!(a, b);
    }

    #[test]
    fn fallback_tokens_are_32_hex_characters_and_differ() {
        let tokens: Vec<String> = (0..64).map(|_| fallback_token()).collect();
        for t in &tokens {
            assert!(is_token(t), "{t}");
        }
        let mut unique = tokens.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tokens.len());
    }

    #[test]
    fn the_program_name_is_this_test_binary() {
        let name = program_name();
        // Cargo names test binaries after the crate, with a hash suffix.
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("sessionkit_write_lock")),
            "{name:?}"
        );
    }
}
