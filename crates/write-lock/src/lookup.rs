//! Looking up other processes: whether an owner pid is alive, when it started, and its command
//! line.
//!
//! The lock judges records without an OS-lock promise (older formats, other programs) by these
//! answers: a dead pid, or a live pid with a different start time (a recycled pid), means the
//! owner is gone. [`OwnerLookup`] is the seam: [`ProcLookup`] asks the kernel, the sweeper wraps
//! it to remember answers for one sweep, and tests fake it.

use std::fmt;
use std::io;

/// Whether a process exists and can still hold a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Liveness {
    /// The process is running (or stopped, or sleeping).
    Alive,
    /// The process has exited but its parent has not reaped it yet. It holds no files and will
    /// never run again, so for a lock it is as good as dead; OpenClaw treats it so too.
    Zombie,
    /// No process has this pid.
    Dead,
}

/// What a look at one pid found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessProbe {
    /// Whether the process exists and runs.
    pub liveness: Liveness,
    /// The process's start time, when known: on Linux, field 22 of `/proc/<pid>/stat` (clock
    /// ticks since boot), comparable with an owner record's `starttime`. `None` for a dead pid
    /// or where the platform does not say.
    pub start_time: Option<u64>,
}

impl ProcessProbe {
    /// A probe result.
    pub fn new(liveness: Liveness, start_time: Option<u64>) -> Self {
        ProcessProbe {
            liveness,
            start_time,
        }
    }
}

/// How the lock learns about other processes. The sweeper wraps it to memoize per sweep; tests
/// fake it.
pub trait OwnerLookup: fmt::Debug + Send + Sync {
    /// Whether `pid` is alive and its start time (Linux: `/proc/<pid>/stat` field 22).
    ///
    /// `Err` means the answer is unknown (for example, permission was denied); callers treat
    /// that as "unknown, keep the lock".
    fn probe(&self, pid: u32) -> io::Result<ProcessProbe>;

    /// The process's command line; `Ok(None)` when it has none (a kernel thread, a zombie) or is
    /// gone.
    fn cmdline(&self, pid: u32) -> io::Result<Option<Vec<String>>>;
}

/// The real lookup: on Linux it reads `/proc`; elsewhere every answer is an
/// [`Unsupported`](io::ErrorKind::Unsupported) error, so no lock is ever judged dead by pid there.
///
/// On Linux, a pid hidden from this process (`/proc` mounted with `hidepid=invisible`, or another
/// pid namespace) looks dead; records with an OS-lock promise do not depend on this answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcLookup;

impl OwnerLookup for ProcLookup {
    fn probe(&self, pid: u32) -> io::Result<ProcessProbe> {
        crate::sys::process_probe(pid)
    }

    fn cmdline(&self, pid: u32) -> io::Result<Option<Vec<String>>> {
        crate::sys::process_cmdline(pid)
    }
}
