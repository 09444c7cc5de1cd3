//! Shared helpers: a fault-injecting file system and a recording one (scratch directories come
//! from `sessionkit-test-support`).

use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::ThreadId;

use sessionkit_atomic_fs::{FileSystem, RealFs};
pub(crate) use sessionkit_test_support::{Scratch, names_in};

#[cfg(unix)]
pub(crate) fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The calls a fault can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Call {
    Lstat,
    CreateDir,
    CreateNew,
    OpenAppend,
    Write,
    SetMode,
    SyncAll,
    SyncData,
    Rename,
    SyncDir,
    Remove,
    SetLen,
}

pub(crate) const REPLACE_CALLS: [Call; 5] = [
    Call::CreateNew,
    Call::Write,
    Call::SyncAll,
    Call::Rename,
    Call::SyncDir,
];

/// What the fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Fail with this errno.
    Errno(i32),
    /// Accept half the bytes (at least one), then behave normally.
    ShortWrite,
}

/// Fails the `nth` (1-based) call of `call`, and every later one if `persistent`.
#[derive(Debug)]
pub(crate) struct FaultFs {
    call: Call,
    nth: u64,
    persistent: bool,
    fault: Fault,
    seen: AtomicU64,
    fired: AtomicU64,
}

impl FaultFs {
    pub(crate) fn new(call: Call, nth: u64, persistent: bool, fault: Fault) -> FaultFs {
        FaultFs {
            call,
            nth,
            persistent,
            fault,
            seen: AtomicU64::new(0),
            fired: AtomicU64::new(0),
        }
    }

    /// How many times the fault fired.
    pub(crate) fn fired(&self) -> u64 {
        self.fired.load(Ordering::SeqCst)
    }

    fn trip(&self, call: Call) -> Option<Fault> {
        if call != self.call {
            return None;
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.nth || (self.persistent && n > self.nth) {
            self.fired.fetch_add(1, Ordering::SeqCst);
            Some(self.fault)
        } else {
            None
        }
    }

    fn check(&self, call: Call) -> io::Result<()> {
        match self.trip(call) {
            Some(Fault::Errno(errno)) => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}

impl FileSystem for FaultFs {
    fn symlink_metadata(&self, path: &Path) -> io::Result<Metadata> {
        self.check(Call::Lstat)?;
        RealFs.symlink_metadata(path)
    }
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.check(Call::CreateDir)?;
        RealFs.create_dir(path, mode)
    }
    fn create_new(&self, path: &Path, mode: u32) -> io::Result<File> {
        self.check(Call::CreateNew)?;
        RealFs.create_new(path, mode)
    }
    fn open_append(&self, path: &Path, mode: u32, create: bool) -> io::Result<File> {
        self.check(Call::OpenAppend)?;
        RealFs.open_append(path, mode, create)
    }
    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<usize> {
        match self.trip(Call::Write) {
            Some(Fault::Errno(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Some(Fault::ShortWrite) => RealFs.write(file, path, &buf[..buf.len().div_ceil(2)]),
            None => RealFs.write(file, path, buf),
        }
    }
    fn set_mode(&self, file: &File, path: &Path, mode: u32) -> io::Result<()> {
        self.check(Call::SetMode)?;
        RealFs.set_mode(file, path, mode)
    }
    fn sync_all(&self, file: &File, path: &Path) -> io::Result<()> {
        self.check(Call::SyncAll)?;
        RealFs.sync_all(file, path)
    }
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.check(Call::SyncData)?;
        RealFs.sync_data(file, path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(Call::Rename)?;
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(Call::SyncDir)?;
        RealFs.sync_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(Call::Remove)?;
        RealFs.remove_file(path)
    }
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        self.check(Call::SetLen)?;
        RealFs.set_len(file, path, len)
    }
}

/// Records every call in order, with the thread it ran on, and performs it for real.
#[derive(Debug, Default)]
pub(crate) struct RecordingFs {
    calls: Mutex<Vec<(Call, PathBuf, ThreadId)>>,
}

impl RecordingFs {
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().iter().map(|c| c.0).collect()
    }

    pub(crate) fn calls_with_paths(&self) -> Vec<(Call, PathBuf)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| (c.0, c.1.clone()))
            .collect()
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn threads(&self) -> Vec<ThreadId> {
        self.calls.lock().unwrap().iter().map(|c| c.2).collect()
    }

    fn note(&self, call: Call, path: &Path) {
        self.calls
            .lock()
            .unwrap()
            .push((call, path.to_path_buf(), std::thread::current().id()));
    }
}

impl FileSystem for RecordingFs {
    fn symlink_metadata(&self, path: &Path) -> io::Result<Metadata> {
        self.note(Call::Lstat, path);
        RealFs.symlink_metadata(path)
    }
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.note(Call::CreateDir, path);
        RealFs.create_dir(path, mode)
    }
    fn create_new(&self, path: &Path, mode: u32) -> io::Result<File> {
        self.note(Call::CreateNew, path);
        RealFs.create_new(path, mode)
    }
    fn open_append(&self, path: &Path, mode: u32, create: bool) -> io::Result<File> {
        self.note(Call::OpenAppend, path);
        RealFs.open_append(path, mode, create)
    }
    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<usize> {
        self.note(Call::Write, path);
        RealFs.write(file, path, buf)
    }
    fn set_mode(&self, file: &File, path: &Path, mode: u32) -> io::Result<()> {
        self.note(Call::SetMode, path);
        RealFs.set_mode(file, path, mode)
    }
    fn sync_all(&self, file: &File, path: &Path) -> io::Result<()> {
        self.note(Call::SyncAll, path);
        RealFs.sync_all(file, path)
    }
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.note(Call::SyncData, path);
        RealFs.sync_data(file, path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.note(Call::Rename, from);
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.note(Call::SyncDir, dir);
        RealFs.sync_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.note(Call::Remove, path);
        RealFs.remove_file(path)
    }
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        self.note(Call::SetLen, path);
        RealFs.set_len(file, path, len)
    }
}
