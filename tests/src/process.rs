//! Spawning a `child-writer`, reading its acks on a thread, and killing it with SIGKILL.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::child::ChildArgs;

/// The signal number of SIGKILL on Linux.
const SIGKILL: i32 = 9;

/// How long a child may take to print its first line (`ready`); far above any real start-up time.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a child printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Ready,
    Ack(u64),
    Garbage,
}

/// A running `child-writer`. Dropping it kills and reaps the child.
#[derive(Debug)]
pub struct WriterProcess {
    child: LineChild<Event>,
}

/// The acks a killed child printed, in order.
#[derive(Clone, Debug, Default)]
pub struct Reaped {
    /// Every `ack <n>` value, in the order printed.
    pub acks: Vec<u64>,
}

impl Reaped {
    /// The last acknowledged value, if any write was acknowledged.
    pub fn last(&self) -> Option<u64> {
        self.acks.last().copied()
    }

    /// Checks the acks run `first, first + 1, ...` with no gap, as the child prints them.
    ///
    /// # Errors
    ///
    /// A message describing the first out-of-order ack.
    pub fn check_consecutive(&self, first: u64) -> Result<(), String> {
        for (i, &ack) in self.acks.iter().enumerate() {
            let expected = first + i as u64;
            if ack != expected {
                return Err(format!("child acked {ack} where {expected} was expected"));
            }
        }
        Ok(())
    }
}

impl WriterProcess {
    /// Starts `exe child-writer <args>` with stdout piped to a reader thread.
    ///
    /// # Errors
    ///
    /// Fails if the process cannot be started.
    pub fn spawn(exe: &Path, args: &ChildArgs) -> Result<WriterProcess, String> {
        let mut argv = vec![OsString::from("child-writer")];
        argv.extend(args.to_args());
        Ok(WriterProcess {
            child: LineChild::spawn("child", exe, argv, parse_event)?,
        })
    }

    /// Waits until the child prints `ready`.
    ///
    /// # Errors
    ///
    /// Fails if the child exits, prints something else first, or takes far too long.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        match self.child.first()? {
            Event::Ready => Ok(()),
            other => Err(format!("child printed {other:?} before ready")),
        }
    }

    /// Sends SIGKILL, reaps the child and returns every ack it printed.
    ///
    /// # Errors
    ///
    /// Fails if the child had already exited on its own (a write error, reported on stderr),
    /// or printed something that is not an ack.
    pub fn kill_and_reap(self) -> Result<Reaped, String> {
        let (events, killed) = self.child.kill_and_reap()?;
        let mut reaped = Reaped::default();
        for event in events {
            match event {
                Event::Ack(n) => reaped.acks.push(n),
                other => return Err(format!("child printed {other:?} after ready")),
            }
        }
        killed?;
        Ok(reaped)
    }
}

/// Sends `SIGname` to `pid` with the `kill` program (this crate has no unsafe code).
pub(crate) fn signal(pid: u32, name: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run kill -{name}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{name} {pid} failed ({status})"))
    }
}

/// The children of process `pid`, from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|list| {
            list.split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A child process that prints one event per line, read on a thread as they come. Dropping it
/// kills and reaps the child, so no child outlives a failed harness (or keeps a loop mount
/// busy).
#[derive(Debug)]
pub(crate) struct LineChild<E> {
    /// What the messages call it.
    name: &'static str,
    /// The child is `strace` running the real one, which is the process to kill.
    traced: bool,
    child: Option<Child>,
    events: Receiver<E>,
    reader: Option<JoinHandle<()>>,
}

impl<E: Send + 'static> LineChild<E> {
    /// Starts `exe <args>` with stdout piped to a thread that parses each whole line.
    pub(crate) fn spawn(
        name: &'static str,
        exe: &Path,
        args: Vec<OsString>,
        parse: fn(&[u8]) -> E,
    ) -> Result<LineChild<E>, String> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or("child has no stdout pipe")?;
        let (tx, events) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("ack-reader".into())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    // A line without its newline is an ack the child never finished printing;
                    // ignoring it only makes the verdict more lenient, never wrong.
                    let Some(text) = line.strip_suffix(b"\n") else {
                        break;
                    };
                    if tx.send(parse(text)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the ack reader: {e}"))?;
        Ok(LineChild {
            name,
            traced: false,
            child: Some(child),
            events,
            reader: Some(reader),
        })
    }

    /// Marks the child as `strace` running the real one: a kill goes to the tracee, and
    /// `strace` then exits with the tracee's signal.
    pub(crate) fn traced(mut self) -> LineChild<E> {
        self.traced = true;
        self
    }

    /// The first line the child prints.
    ///
    /// Fails if the child exits without a word or takes far too long.
    pub(crate) fn first(&mut self) -> Result<E, String> {
        let name = self.name;
        self.events
            .recv_timeout(READY_TIMEOUT)
            .map_err(|e| match e {
                RecvTimeoutError::Timeout => {
                    format!("{name} printed nothing within {READY_TIMEOUT:?}")
                }
                RecvTimeoutError::Disconnected => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    format!("{name} exited before ready ({status:?}); see its stderr")
                }
            })
    }

    /// Sends SIGKILL, reaps the child and returns every line it printed after the first.
    ///
    /// The second value is an error if the child had already exited on its own: the caller
    /// decides whether that is one (a child may exit after reporting a finding).
    pub(crate) fn kill_and_reap(mut self) -> Result<(Vec<E>, Result<(), String>), String> {
        let mut child = self.child.take().ok_or("child already reaped")?;
        if !self.traced || !kill_tracees(&child) {
            child
                .kill()
                .map_err(|e| format!("cannot kill child {}: {e}", child.id()))?;
        }
        let status = child
            .wait()
            .map_err(|e| format!("cannot reap child {}: {e}", child.id()))?;
        if let Some(reader) = self.reader.take() {
            // The pipe reaches end-of-file once the child is dead, so this cannot hang.
            reader
                .join()
                .map_err(|_| "the ack reader panicked".to_string())?;
        }
        let events = self.events.try_iter().collect();
        let killed = if status.signal() == Some(SIGKILL) {
            Ok(())
        } else {
            Err(format!(
                "{} exited on its own ({status}) instead of being killed; see its stderr",
                self.name
            ))
        };
        Ok((events, killed))
    }
}

/// SIGKILLs the processes `strace` (`child`) traces; false if it had none left.
///
/// Killing `strace` alone would only detach them, and they would run on.
fn kill_tracees(child: &Child) -> bool {
    let tracees = children_of(child.id());
    for &tracee in &tracees {
        // A tracee that exited since it was listed is no error: strace's status tells.
        let _ = signal(tracee, "KILL");
    }
    !tracees.is_empty()
}

impl<E> Drop for LineChild<E> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.traced {
                kill_tracees(&child);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn parse_event(text: &[u8]) -> Event {
    if text == b"ready" {
        return Event::Ready;
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.strip_prefix("ack "))
        .and_then(|n| n.parse().ok())
        .map_or(Event::Garbage, Event::Ack)
}
