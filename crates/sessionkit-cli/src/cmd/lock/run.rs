//! `sessionkit lock run`: run a command under a file's write lock, like `flock(1)`, with stale
//! recovery and a bounded hold.
//!
//! The lock is taken, the command runs with the terminal's standard streams, and the lock is
//! given back when it exits. While it runs, this process's lock watchdog bounds the hold: past
//! the max hold it revokes the lock, and the command is then sent `SIGTERM`.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use clap::Args;
use sessionkit::lock::{LockGuard, Locker};

use super::Overrides;
use crate::duration;
use crate::exit;
use crate::failure::Failure;

/// How long each wait for a revocation lasts between two checks on the command: the most a
/// command's exit goes unnoticed.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Arguments of `sessionkit lock run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The file to lock. The lock is the file PATH.lock beside it; PATH need not exist, but its
    /// directory must.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// How long to wait while another process holds the lock, as 500ms, 60s, 5m or 1h; 0s tries
    /// once [default: 60s, or SESSIONKIT_LOCK_ACQUIRE_TIMEOUT_MS in milliseconds].
    #[arg(long, value_name = "DUR", value_parser = duration::parse)]
    pub(crate) timeout: Option<Duration>,

    /// The longest the command may hold the lock; past it the lock is revoked and the command
    /// is sent SIGTERM [default: 5m, or SESSIONKIT_LOCK_MAX_HOLD_MS in milliseconds].
    #[arg(long, value_name = "DUR", value_parser = duration::parse_positive)]
    pub(crate) max_hold: Option<Duration>,

    /// A label for the lock record (a job id, say), shown by `lock show` and in the timeout
    /// errors of other waiters.
    #[arg(long, value_name = "TEXT")]
    pub(crate) label: Option<String>,

    /// The command to run and its arguments, after `--`.
    #[arg(value_name = "CMD", last = true, required = true, num_args = 1..)]
    pub(crate) command: Vec<OsString>,
}

/// Takes the lock, runs the command, gives the lock back, and returns the command's status.
pub(crate) fn run(args: &RunArgs) -> Result<u8, Failure> {
    let config = super::config(&Overrides {
        timeout: args.timeout,
        max_hold: args.max_hold,
        label: args.label.as_deref(),
    })?;
    let max_hold = config.max_hold();
    let (program, program_args) = args
        .command
        .split_first()
        .expect("clap requires at least one word of CMD");
    // A timeout names the holder: its pid, label and how long it has held the lock.
    let guard = Locker::with_config(config).acquire(&args.path)?;
    let child = match Command::new(program).args(program_args).spawn() {
        Ok(child) => child,
        Err(source) => {
            // Nothing ran under the lock. Should the lock file stay behind, the next acquire
            // removes it, as the OS lock goes with this process; the spawn error is the news.
            let _ = guard.release();
            return Err(Failure::Spawn {
                program: program.clone(),
                source,
            });
        }
    };
    let mut running = Running {
        child,
        program: program.clone(),
    };
    let revocation = guard.revocation();
    let status = loop {
        if let Some(status) = running.try_wait()? {
            break status;
        }
        // Sleeps until the watchdog revokes the lock or the pause ends; never a busy loop.
        if revocation.wait_timeout(CHECK_EVERY).is_some() {
            return Ok(running.stop_after_revocation(args, max_hold));
        }
    };
    if revocation.is_revoked() {
        // The command ended as the watchdog revoked the lock: it held the lock too long, and
        // the lock file may already belong to someone else.
        Failure::Revoked {
            path: args.path.clone(),
            max_hold,
            program: program.clone(),
            pid: running.child.id(),
            stop: None,
        }
        .report();
        return Ok(exit::TEMP_FAIL);
    }
    release(guard)?;
    Ok(status_code(status))
}

/// The command under the lock.
struct Running {
    child: Child,
    program: OsString,
}

impl Running {
    /// The command's status if it has exited (and is now reaped), else `None`.
    fn try_wait(&mut self) -> Result<Option<ExitStatus>, Failure> {
        self.child.try_wait().map_err(|source| Failure::Wait {
            program: self.program.clone(),
            source,
        })
    }

    /// After the watchdog revoked the lock: asks the command to stop, says so on standard
    /// error at once, waits for the command, and returns [`exit::TEMP_FAIL`].
    fn stop_after_revocation(&mut self, args: &RunArgs, max_hold: Duration) -> u8 {
        let pid = self.child.id();
        // A command that was reaped may have had its pid reused, so it is signalled only while
        // it is known not to be (running, or a zombie nobody else can reap).
        let stop = match self.child.try_wait() {
            Ok(Some(_)) => None,
            Ok(None) => Some(self.terminate()),
            Err(_) => Some("no signal, as its state could not be read"),
        };
        // Reported before the wait, so that a command slow to stop is not a silent one.
        Failure::Revoked {
            path: args.path.clone(),
            max_hold,
            program: self.program.clone(),
            pid,
            stop,
        }
        .report();
        // Whatever the wait says, the news is the revocation; the command is gone or ignored
        // the signal, and either way the lock is no longer ours.
        let _ = self.child.wait();
        exit::TEMP_FAIL
    }

    /// Sends the command `SIGTERM` with kill(1), or `SIGKILL` if kill(1) cannot do it; returns
    /// the name of the signal sent.
    fn terminate(&mut self) -> &'static str {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if sent {
            return "SIGTERM";
        }
        // Only `SIGKILL` is left without kill(1); std sends it to this child, never another.
        match self.child.kill() {
            Ok(()) => "SIGKILL",
            Err(_) => "no signal (it could not be signalled)",
        }
    }
}

/// Gives the lock back.
fn release(guard: LockGuard) -> Result<(), Failure> {
    // The lock file is removed only if it is still this lock's, never a newer holder's.
    guard.release().map_err(Failure::Lock)
}

/// The exit status to pass on for the command's: its own code, or 128 plus the number of the
/// signal that killed it, as shells report it.
fn status_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        // A Unix exit code is one byte; anything else would be a platform's surprise.
        return u8::try_from(code).unwrap_or(u8::MAX);
    }
    status
        .signal()
        .and_then(|signal| u8::try_from(signal).ok())
        .and_then(|signal| exit::SIGNAL_BASE.checked_add(signal))
        .unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through_and_signals_add_128() {
        // A wait status holds the code in its second byte and a signal in its low bits.
        assert_eq!(status_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(status_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(status_code(ExitStatus::from_raw(255 << 8)), 255);
        assert_eq!(status_code(ExitStatus::from_raw(15)), 128 + 15);
        assert_eq!(status_code(ExitStatus::from_raw(9)), 128 + 9);
        // A core dump sets a flag bit beside the signal; the status is still 128 + signal.
        assert_eq!(status_code(ExitStatus::from_raw(0x80 | 11)), 128 + 11);
    }
}
