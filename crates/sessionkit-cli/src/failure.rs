//! Why a command failed: the one error type the commands return to `main`.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use sessionkit::atomic_fs;

use crate::exit;

/// A failed command, with everything needed for its message and exit status.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library refused the request or a file-system step failed.
    Library(atomic_fs::Error),
    /// Standard input could not be read.
    Stdin(io::Error),
}

impl Failure {
    /// The exit status for this failure; see [`exit`] for what each one means.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            // Only the caller's data is at fault here; a missing parent or a directory target
            // is a problem with the file system, not with what was piped in.
            Failure::Library(err) if err.is_bad_input() || err.is_corrupt() => exit::DATA_ERR,
            Failure::Library(_) | Failure::Stdin(_) => exit::IO_ERR,
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

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The library's message already names the operation, the step and the paths.
            Failure::Library(err) => fmt::Display::fmt(err, f),
            Failure::Stdin(_) => f.write_str("failed to read standard input"),
        }
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            // Transparent: the library error's own text is already this error's text.
            Failure::Library(err) => err.source(),
            Failure::Stdin(err) => Some(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_failure_appends_the_os_error() {
        let failure = Failure::Stdin(io::Error::other("the pipe broke"));
        assert_eq!(
            failure.message(),
            "failed to read standard input: the pipe broke"
        );
        assert_eq!(failure.exit_code(), exit::IO_ERR);
    }

    #[test]
    fn line_breaks_in_a_source_are_escaped() {
        let failure = Failure::Stdin(io::Error::other("first\nsecond\r"));
        assert_eq!(
            failure.message(),
            "failed to read standard input: first\\nsecond\\r"
        );
    }
}
