//! Why a command failed: the one error type the commands return to `main`.

use std::error::Error as StdError;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionkit::{atomic_fs, lock, store, sweeper};

use crate::{duration, exit};

/// A failed command, with everything needed for its message and exit status.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library refused the request or a file-system step failed.
    Library(atomic_fs::Error),
    /// Standard input could not be read.
    Stdin(io::Error),
    /// Standard output could not be written.
    Stdout(io::Error),
    /// The lock library refused a setting, timed out, or a file-system step failed.
    Lock(lock::Error),
    /// A lock inspection could not be written as JSON (a path that is not UTF-8, say).
    Json {
        /// The path the user named.
        path: PathBuf,
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// The sweeper refused a setting (`SESSIONKIT_LOCK_STALE_MS`, say) or the sweep failed.
    Sweep(sweeper::Error),
    /// A sweep report could not be written as JSON (a path that is not UTF-8, say).
    ReportJson(serde_json::Error),
    /// The command given to `lock run` could not be started.
    Spawn {
        /// The program, as given.
        program: OsString,
        /// The operating system's error.
        source: io::Error,
    },
    /// Waiting for the command given to `lock run` failed.
    Wait {
        /// The program, as given.
        program: OsString,
        /// The operating system's error.
        source: io::Error,
    },
    /// The session store refused a value, found a file corrupt or of a newer format, or a
    /// file-system step failed.
    Store(store::Error),
    /// `store get` found no entry under the key.
    NoEntry {
        /// The snapshot path the user named.
        path: PathBuf,
        /// The key asked for.
        key: String,
    },
    /// Standard input could not be read for `store set`.
    SetStdin {
        /// The snapshot path the user named.
        path: PathBuf,
        /// The key to set.
        key: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// Standard input is not an entry or a patch `store set` can use.
    BadInput {
        /// The snapshot path the user named.
        path: PathBuf,
        /// The key to set.
        key: String,
        /// Why: not UTF-8, not JSON, not an object.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A `store` report could not be written as JSON (a path that is not UTF-8, say).
    StoreJson(serde_json::Error),
    /// `simulate` could not set up, run or check its workload (the step and why).
    Simulate(String),
    /// `doctor` could not look at its state directory: missing, not a directory, unlistable.
    Doctor {
        /// The directory the user named.
        dir: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A `doctor` report could not be written as JSON (a path that is not UTF-8, say).
    DoctorJson(serde_json::Error),
    /// The lock was revoked by the watchdog while the command given to `lock run` ran.
    Revoked {
        /// The path the user named.
        path: PathBuf,
        /// The max hold the lock was taken with.
        max_hold: Duration,
        /// The program, as given.
        program: OsString,
        /// The command's pid.
        pid: u32,
        /// How the command was told to stop; `None` if it had already exited.
        stop: Option<&'static str>,
    },
}

impl Failure {
    /// The exit status for this failure; see [`exit`] for what each one means.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            // Only the caller's data is at fault here; a missing parent or a directory target
            // is a problem with the file system, not with what was piped in.
            Failure::Library(err) if err.is_bad_input() || err.is_corrupt() => exit::DATA_ERR,
            // Another holder may be done soon; a bad `SESSIONKIT_LOCK_*` value is the caller's
            // to fix, like a bad option.
            Failure::Lock(err) if err.is_timeout() => exit::TEMP_FAIL,
            Failure::Lock(err) if err.is_config() => exit::USAGE,
            Failure::Revoked { .. } => exit::TEMP_FAIL,
            Failure::Sweep(err) if err.is_config() => exit::USAGE,
            // Another process held the journal's (or a transcript's) lock past the timeout:
            // nothing was written, and it may be done soon.
            Failure::Store(err) if err.is_timeout() => exit::TEMP_FAIL,
            // A damaged file or a newer format fails the same way on every retry.
            Failure::Store(err)
                if err.is_bad_input() || err.is_corrupt() || err.is_unsupported() =>
            {
                exit::DATA_ERR
            }
            Failure::NoEntry { .. } => exit::NOT_FOUND,
            Failure::Json { .. }
            | Failure::ReportJson(_)
            | Failure::BadInput { .. }
            | Failure::StoreJson(_)
            | Failure::DoctorJson(_) => exit::DATA_ERR,
            Failure::Spawn { .. } => exit::CANNOT_RUN,
            Failure::Library(_)
            | Failure::Stdin(_)
            | Failure::SetStdin { .. }
            | Failure::Stdout(_)
            | Failure::Lock(_)
            | Failure::Sweep(_)
            | Failure::Store(_)
            | Failure::Doctor { .. }
            | Failure::Wait { .. }
            | Failure::Simulate(_) => exit::IO_ERR,
        }
    }

    /// Prints the one-line error message on standard error and returns the exit status.
    pub(crate) fn report(&self) -> u8 {
        // `eprintln!` would panic if stderr is a closed pipe; the exit status still tells the
        // story.
        let _ = writeln!(io::stderr().lock(), "sessionkit: error: {}", self.message());
        self.exit_code()
    }

    /// This failure with the store and the key named, if it is a failure to read standard
    /// input: what `store set` fails with when it cannot read its entry.
    pub(crate) fn setting(self, path: &Path, key: &str) -> Failure {
        match self {
            Failure::Stdin(source) => Failure::SetStdin {
                path: path.to_path_buf(),
                key: key.to_owned(),
                source,
            },
            other => other,
        }
    }

    /// The message on one line: this error's text, then each source's, joined with `": "`.
    ///
    /// Line breaks (a path may contain them) are shown as `\n` and `\r`, so that the message
    /// stays on exactly one line for scripts and logs.
    pub(crate) fn message(&self) -> String {
        let mut line = self.to_string();
        let mut source = self.source();
        while let Some(err) = source {
            line.push_str(": ");
            line.push_str(&err.to_string());
            source = err.source();
        }
        line.replace('\n', "\\n").replace('\r', "\\r")
    }
}

impl From<atomic_fs::Error> for Failure {
    fn from(err: atomic_fs::Error) -> Self {
        Failure::Library(err)
    }
}

impl From<lock::Error> for Failure {
    fn from(err: lock::Error) -> Self {
        Failure::Lock(err)
    }
}

impl From<store::Error> for Failure {
    fn from(err: store::Error) -> Self {
        Failure::Store(err)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The library's message already names the operation, the step and the paths.
            Failure::Library(err) => fmt::Display::fmt(err, f),
            Failure::Stdin(_) => f.write_str("failed to read standard input"),
            Failure::Stdout(_) => f.write_str("failed to write standard output"),
            // The library's message names the operation, the path and, for a timeout, the
            // holder: its pid, label and how long it has held the lock.
            Failure::Lock(err) => fmt::Display::fmt(err, f),
            Failure::Json { path, .. } => {
                write!(f, "failed to show the lock on `{}` as JSON", path.display())
            }
            Failure::Sweep(err) => fmt::Display::fmt(err, f),
            Failure::ReportJson(_) => f.write_str("failed to write the sweep report as JSON"),
            // The library's message names the operation, the file and, for damage, where it is.
            Failure::Store(err) => fmt::Display::fmt(err, f),
            Failure::NoEntry { path, key } => {
                write!(f, "no entry `{key}` in `{}`", path.display())
            }
            Failure::SetStdin { path, key, .. } => write!(
                f,
                "failed to read standard input to set `{key}` in `{}`",
                path.display()
            ),
            Failure::BadInput { path, key, .. } => write!(
                f,
                "failed to set `{key}` in `{}` from standard input",
                path.display()
            ),
            Failure::StoreJson(_) => f.write_str("failed to write the store report as JSON"),
            Failure::Doctor { dir, .. } => {
                write!(
                    f,
                    "failed to examine the state directory `{}`",
                    dir.display()
                )
            }
            Failure::DoctorJson(_) => f.write_str("failed to write the doctor report as JSON"),
            Failure::Spawn { program, .. } => {
                write!(f, "could not run `{}`", program.to_string_lossy())
            }
            Failure::Wait { program, .. } => {
                write!(f, "failed to wait for `{}`", program.to_string_lossy())
            }
            Failure::Simulate(what) => write!(f, "simulate failed to {what}"),
            Failure::Revoked {
                path,
                max_hold,
                program,
                pid,
                stop,
            } => {
                write!(
                    f,
                    "the lock on `{}` was revoked after its max hold of {} while `{}` (pid {pid}) ran",
                    path.display(),
                    duration::human(*max_hold),
                    program.to_string_lossy(),
                )?;
                match stop {
                    Some(how) => write!(f, "; sent it {how}"),
                    None => f.write_str("; it had already exited"),
                }
            }
        }
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            // Transparent: the library error's own text is already this error's text.
            Failure::Library(err) => err.source(),
            Failure::Lock(err) => err.source(),
            Failure::Sweep(err) => err.source(),
            Failure::Store(err) => err.source(),
            Failure::BadInput { source, .. } => Some(&**source),
            Failure::StoreJson(source) | Failure::DoctorJson(source) => Some(source),
            Failure::Doctor { source, .. } => Some(source),
            Failure::NoEntry { .. } => None,
            Failure::ReportJson(source) => Some(source),
            Failure::Stdin(err) | Failure::Stdout(err) => Some(err),
            Failure::SetStdin { source, .. } => Some(source),
            Failure::Json { source, .. } => Some(source),
            Failure::Spawn { source, .. } | Failure::Wait { source, .. } => Some(source),
            Failure::Revoked { .. } | Failure::Simulate(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `text` as a message shows it: line breaks written as `\n` and `\r`.
    fn one_line(text: &str) -> String {
        text.replace('\n', "\\n").replace('\r', "\\r")
    }

    /// Any text, with line breaks common enough that most cases hold one.
    fn text() -> impl Strategy<Value = String> {
        let char = prop_oneof![1 => Just('\n'), 1 => Just('\r'), 6 => any::<char>()];
        proptest::collection::vec(char, 0..16).prop_map(String::from_iter)
    }

    proptest! {
        #[test]
        fn stdin_and_stdout_failures_append_the_os_error(text in text()) {
            let stdin = Failure::Stdin(io::Error::other(text.clone()));
            prop_assert_eq!(
                stdin.message(),
                format!("failed to read standard input: {}", one_line(&text))
            );
            prop_assert_eq!(stdin.exit_code(), exit::IO_ERR);
            let stdout = Failure::Stdout(io::Error::other(text.clone()));
            prop_assert_eq!(
                stdout.message(),
                format!("failed to write standard output: {}", one_line(&text))
            );
            prop_assert_eq!(stdout.exit_code(), exit::IO_ERR);
        }

        #[test]
        fn a_store_set_stdin_failure_names_the_key_and_the_store(
            path in text(),
            key in text(),
            why in text(),
        ) {
            let set = Failure::Stdin(io::Error::other(why.clone()))
                .setting(Path::new(&path), &key);
            prop_assert_eq!(
                set.message(),
                format!(
                    "failed to read standard input to set `{}` in `{}`: {}",
                    one_line(&key),
                    one_line(&path),
                    one_line(&why)
                )
            );
            prop_assert_eq!(set.exit_code(), exit::IO_ERR);
            // Any other failure passes through unchanged.
            let other = Failure::Stdout(io::Error::other(why.clone()))
                .setting(Path::new(&path), &key);
            prop_assert!(matches!(other, Failure::Stdout(_)), "{:?}", other);
        }

        #[test]
        fn a_message_is_one_line_whatever_the_path_and_key(
            path in text(),
            key in text(),
        ) {
            let no_entry = Failure::NoEntry { path: PathBuf::from(&path), key: key.clone() };
            let message = no_entry.message();
            prop_assert!(!message.contains(['\n', '\r']), "{}", message);
            prop_assert_eq!(
                message,
                format!("no entry `{}` in `{}`", one_line(&key), one_line(&path))
            );
            prop_assert_eq!(no_entry.exit_code(), exit::NOT_FOUND);
        }

        #[test]
        fn lock_run_failures_name_the_command_and_pick_their_status(
            program in text(),
            path in text(),
            why in text(),
            max_hold_ms in 0_u64..1_000_000_000,
            pid in any::<u32>(),
            stop in proptest::option::of(prop_oneof![Just("SIGTERM"), Just("SIGKILL")]),
        ) {
            let spawn = Failure::Spawn {
                program: OsString::from(&program),
                source: io::Error::other(why.clone()),
            };
            prop_assert_eq!(
                spawn.message(),
                format!("could not run `{}`: {}", one_line(&program), one_line(&why))
            );
            prop_assert_eq!(spawn.exit_code(), exit::CANNOT_RUN);

            let max_hold = Duration::from_millis(max_hold_ms);
            let revoked = Failure::Revoked {
                path: PathBuf::from(&path),
                max_hold,
                program: OsString::from(&program),
                pid,
                stop,
            };
            let end = match stop {
                Some(how) => format!("sent it {how}"),
                None => "it had already exited".to_owned(),
            };
            prop_assert_eq!(
                revoked.message(),
                format!(
                    "the lock on `{}` was revoked after its max hold of {} while `{}` (pid {pid}) \
                     ran; {end}",
                    one_line(&path),
                    duration::human(max_hold),
                    one_line(&program),
                )
            );
            prop_assert_eq!(revoked.exit_code(), exit::TEMP_FAIL);
        }
    }

    #[test]
    fn lock_setting_errors_are_usage_errors() {
        for name in [
            "SESSIONKIT_LOCK_MAX_HOLD_MS",
            "SESSIONKIT_LOCK_ACQUIRE_TIMEOUT_MS",
            "SESSIONKIT_LOCK_STALE_MS",
        ] {
            let mut builder = sessionkit::lock::LockConfig::builder();
            builder.apply_env(|asked| (asked == name).then(|| "x".to_owned()));
            let failure = Failure::from(builder.build().expect_err("an invalid value"));
            assert_eq!(failure.exit_code(), exit::USAGE, "{name}");
            assert!(
                failure.message().contains(&format!("`{name}`")),
                "{name}: {}",
                failure.message()
            );
        }
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "the test plays another process holding the journal's lock"
    )]
    fn a_store_lock_timeout_is_a_temporary_failure() {
        use sessionkit::store::Store;

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.json");
        drop(Store::builder().open(&path).expect("create the store"));
        // The journal's lock is held by another open file, as by a writer that hangs.
        let journal = std::fs::File::open(sessionkit::store::journal_path_for(&path))
            .expect("open the journal");
        journal.lock().expect("lock the journal");
        let err = Store::builder()
            .lock_timeout(Duration::from_millis(1))
            .open(&path)
            .expect_err("the journal's lock is held");
        assert!(err.is_timeout(), "{err}");
        let failure = Failure::from(err);
        assert_eq!(
            failure.exit_code(),
            exit::TEMP_FAIL,
            "{}",
            failure.message()
        );
    }

    #[test]
    fn store_failures_pick_their_status_and_keep_the_librarys_words() {
        let path = std::path::Path::new("dir/s.json");
        let corrupt =
            sessionkit::store::parse_snapshot(path, b"").expect_err("an empty snapshot is corrupt");
        let said = corrupt.to_string();
        let corrupt = Failure::from(corrupt);
        assert_eq!(corrupt.exit_code(), exit::DATA_ERR);
        assert!(
            corrupt.message().starts_with(&said),
            "{}",
            corrupt.message()
        );
        assert!(said.contains("`dir/s.json`"), "{said}");

        let not_an_object = sessionkit::store::Entry::parse("[]").expect_err("not an object");
        let said = not_an_object.to_string();
        let bad_input = Failure::BadInput {
            path: path.to_path_buf(),
            key: "k\n".to_owned(),
            source: Box::new(not_an_object),
        };
        assert_eq!(
            bad_input.message(),
            format!("failed to set `k\\n` in `dir/s.json` from standard input: {said}")
        );
        assert_eq!(bad_input.exit_code(), exit::DATA_ERR);

        let nowhere = "/nonexistent/sessionkit/s.json";
        let missing = sessionkit::store::load_store(nowhere).unwrap_err();
        assert!(!missing.is_corrupt() && !missing.is_bad_input());
        let missing = Failure::Store(missing);
        assert_eq!(missing.exit_code(), exit::IO_ERR);
        let message = missing.message();
        assert!(message.contains(&format!("`{nowhere}`")), "{message}");
        assert!(
            message.contains(&format!("`{nowhere}.journal`")),
            "{message}"
        );
    }
}
