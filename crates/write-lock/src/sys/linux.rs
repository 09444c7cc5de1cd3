//! Linux implementation of the platform functions, read from `/proc`.

use std::fs;
use std::io;
use std::sync::OnceLock;

use crate::lookup::{Liveness, ProcessProbe};

/// The open flag that leaves a file's access time alone.
pub(crate) const OPEN_NOATIME: i32 = libc::O_NOATIME;

/// `ESRCH`: reading a `/proc/<pid>` file whose process was reaped after the open.
const ESRCH: i32 = 3;

/// Whether `pid` is alive, a zombie or dead, and its start time, from `/proc/<pid>/stat`.
///
/// A missing file (or one whose process vanished mid-read) means `Dead`. Another error, such as
/// a permission error, is returned: the caller cannot tell. A stat line that does not parse is
/// an [`InvalidData`](io::ErrorKind::InvalidData) error.
pub(crate) fn process_probe(pid: u32) -> io::Result<ProcessProbe> {
    match fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat(&stat),
        Err(e) if is_gone(&e) => Ok(ProcessProbe::new(Liveness::Dead, None)),
        Err(e) => Err(e),
    }
}

/// The command line of `pid` from `/proc/<pid>/cmdline`, split on NUL, lossy UTF-8.
///
/// `Ok(None)` when the process is gone or has no command line (a kernel thread or a zombie).
/// Empty arguments inside the line are kept; only the terminating NUL is dropped. A process that
/// rewrote its argv into one string (like `setproctitle`) comes back as one element.
pub(crate) fn process_cmdline(pid: u32) -> io::Result<Option<Vec<String>>> {
    let bytes = match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) => bytes,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(split_cmdline(&bytes))
}

/// This process's start time (field 22 of `/proc/self/stat`), read once.
pub(crate) fn own_start_time() -> Option<u64> {
    static START: OnceLock<Option<u64>> = OnceLock::new();
    *START.get_or_init(|| {
        fs::read("/proc/self/stat")
            .ok()
            .and_then(|stat| parse_stat(&stat).ok())
            .and_then(|probe| probe.start_time)
    })
}

/// The kernel's boot id (`/proc/sys/kernel/random/boot_id`), trimmed, read once.
pub(crate) fn boot_id() -> Option<String> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID
        .get_or_init(|| read_trimmed("/proc/sys/kernel/random/boot_id"))
        .clone()
}

/// The host name (`/proc/sys/kernel/hostname`), trimmed, read once.
pub(crate) fn hostname() -> Option<String> {
    static HOSTNAME: OnceLock<Option<String>> = OnceLock::new();
    HOSTNAME
        .get_or_init(|| read_trimmed("/proc/sys/kernel/hostname"))
        .clone()
}

/// The file name of the running executable, read once.
pub(crate) fn program_name() -> Option<String> {
    static PROGRAM: OnceLock<Option<String>> = OnceLock::new();
    PROGRAM.get_or_init(super::current_program_name).clone()
}

/// 32 lowercase hex characters of fresh randomness from `/dev/urandom` (with a documented
/// fallback in `sys`).
pub(crate) fn random_token() -> String {
    super::token_from_urandom_or_fallback()
}

/// True for the errors that mean the process does not exist (any more).
fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH)
}

/// A small `/proc` file's contents, trimmed; `None` if unreadable or blank.
fn read_trimmed(path: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Parses a `/proc/<pid>/stat` line: `pid (comm) state ppid ... starttime ...`.
///
/// The command name may hold any bytes, spaces and parentheses included, so the fields are
/// counted from the last `)`: the state is field 3 and the start time field 22 (1-based, with
/// the command name as field 2). `Z` is a zombie, `X` or `x` dead, any other state alive.
fn parse_stat(stat: &[u8]) -> io::Result<ProcessProbe> {
    let malformed = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed /proc stat line: {what}"),
        )
    };
    let open = stat
        .iter()
        .position(|&b| b == b'(')
        .ok_or_else(|| malformed("no `(`"))?;
    let close = stat
        .iter()
        .rposition(|&b| b == b')')
        .filter(|&close| close > open)
        .ok_or_else(|| malformed("no `)` after the `(`"))?;
    let pid = stat[..open].trim_ascii();
    if pid.is_empty() || !pid.iter().all(u8::is_ascii_digit) {
        return Err(malformed("the pid is not a number"));
    }
    // Fields from 3 on, after the command name.
    let mut fields = stat[close + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    let liveness = match fields.next() {
        Some(b"Z") => Liveness::Zombie,
        Some(b"X" | b"x") => Liveness::Dead,
        Some([_]) => Liveness::Alive,
        Some(_) => return Err(malformed("the state is not one character")),
        None => return Err(malformed("no state")),
    };
    // The state was field 3; field 22 is 19 fields further on.
    let start_time = fields
        .nth(18)
        .ok_or_else(|| malformed("fewer than 22 fields"))?;
    let start_time = std::str::from_utf8(start_time)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| malformed("the start time is not a number"))?;
    Ok(ProcessProbe::new(liveness, Some(start_time)))
}

/// Splits a `/proc/<pid>/cmdline` into arguments; `None` if it is empty.
fn split_cmdline(bytes: &[u8]) -> Option<Vec<String>> {
    if bytes.is_empty() {
        return None;
    }
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    Some(
        bytes
            .split(|&b| b == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stat line with `comm` and `state`, where field 22 (the start time) is 777.
    /// Whatever the input, the parser returns a probe with a start time or an `InvalidData` error.
    fn check_stat_outcome(stat: &[u8]) -> Result<(), TestCaseError> {
        match parse_stat(stat) {
            Ok(probe) => prop_assert!(probe.start_time.is_some(), "{probe:?}"),
            Err(e) => prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData),
        }
        Ok(())
    }

    fn stat_line(comm: &str, state: &str) -> String {
        // Fields 4 to 21 are 18 placeholders; then 22 = 777, then a few more.
        let middle: Vec<String> = (4..=21).map(|n| n.to_string()).collect();
        format!("1234 ({comm}) {state} {} 777 23 24 25\n", middle.join(" "))
    }

    #[test]
    fn a_real_stat_line_parses() {
        let line = b"4242 (bash) S 4241 4242 4242 34816 4300 4194304 1234 5678 0 0 3 1 4 2 20 0 1 0 98765 8192000 900 18446744073709551615 1 1 0 0 0 0 65536 3670020 1266777851 0 0 0 17 2 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(line).unwrap(),
            ProcessProbe::new(Liveness::Alive, Some(98765))
        );
    }

    #[test]
    fn the_command_name_may_hold_spaces_and_parentheses() {
        let line = stat_line("a) b) (c", "S");
        assert!(line.starts_with("1234 (a) b) (c) S 4 "));
        assert_eq!(
            parse_stat(line.as_bytes()).unwrap(),
            ProcessProbe::new(Liveness::Alive, Some(777))
        );
        let line = stat_line(") Z 1 2 3 (", "R");
        assert_eq!(
            parse_stat(line.as_bytes()).unwrap(),
            ProcessProbe::new(Liveness::Alive, Some(777))
        );
    }

    #[test]
    fn the_state_names_zombies_and_dead_processes() {
        for (state, liveness) in [
            ("R", Liveness::Alive),
            ("S", Liveness::Alive),
            ("D", Liveness::Alive),
            ("T", Liveness::Alive),
            ("t", Liveness::Alive),
            ("I", Liveness::Alive),
            ("Z", Liveness::Zombie),
            ("X", Liveness::Dead),
            ("x", Liveness::Dead),
        ] {
            let line = stat_line("worker", state);
            assert_eq!(
                parse_stat(line.as_bytes()).unwrap(),
                ProcessProbe::new(liveness, Some(777)),
                "{state}"
            );
        }
    }

    #[test]
    fn malformed_lines_are_invalid_data() {
        let short = "1234 (sleep) S 1 2 3".to_owned();
        let long_state = stat_line("sleep", "SS");
        let bad_start = stat_line("sleep", "S").replace(" 777 ", " 7x7 ");
        let negative_start = stat_line("sleep", "S").replace(" 777 ", " -777 ");
        let no_pid = stat_line("sleep", "S").replacen("1234 ", "", 1);
        let bad_pid = stat_line("sleep", "S").replacen("1234", "12a4", 1);
        let reversed = "1234 )sleep( S 1".to_owned();
        for line in [
            "",
            "   ",
            "1234",
            "1234 (sleep",
            "1234 sleep) S",
            "1234 (sleep)",
            "1234 (sleep)   \n",
            &short,
            &long_state,
            &bad_start,
            &negative_start,
            &no_pid,
            &bad_pid,
            &reversed,
        ] {
            let err = parse_stat(line.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{line:?}");
        }
    }

    #[test]
    fn non_utf8_command_names_parse() {
        let mut line = b"99 (\xff\xfe) ".to_vec();
        line.extend_from_slice(stat_line("x", "Z").split_once(") ").unwrap().1.as_bytes());
        assert_eq!(
            parse_stat(&line).unwrap(),
            ProcessProbe::new(Liveness::Zombie, Some(777))
        );
    }

    #[test]
    fn cmdlines_split_on_nul() {
        assert_eq!(split_cmdline(b""), None);
        assert_eq!(
            split_cmdline(b"sleep\x0030\x00"),
            Some(vec!["sleep".to_owned(), "30".to_owned()])
        );
        // An empty argument in the middle is a real argument.
        assert_eq!(
            split_cmdline(b"a\x00\x00b\x00"),
            Some(vec!["a".to_owned(), String::new(), "b".to_owned()])
        );
        // A rewritten argv without a terminating NUL.
        assert_eq!(
            split_cmdline(b"nginx: worker process"),
            Some(vec!["nginx: worker process".to_owned()])
        );
        assert_eq!(
            split_cmdline(b"\xffx\x00"),
            Some(vec!["\u{fffd}x".to_owned()])
        );
    }

    #[test]
    fn this_process_is_alive_and_has_a_start_time() {
        let probe = process_probe(std::process::id()).unwrap();
        assert_eq!(probe.liveness, Liveness::Alive);
        assert!(probe.start_time.is_some());
        assert_eq!(own_start_time(), probe.start_time);
    }

    #[test]
    fn system_identity_is_read_from_proc() {
        let boot = boot_id().unwrap();
        assert_eq!(boot.len(), 36, "{boot}");
        assert_eq!(boot.trim(), boot);
        let host = hostname().unwrap();
        assert!(!host.is_empty());
        assert_eq!(host.trim(), host);
    }

    proptest! {
        #[test]
        fn any_text_parses_to_a_start_time_or_invalid_data(s in any::<String>()) {
            check_stat_outcome(s.as_bytes())?;
        }

        #[test]
        fn any_bytes_parse_to_a_start_time_or_invalid_data(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            check_stat_outcome(&b)?;
        }

        #[test]
        fn a_line_cut_before_the_start_time_is_refused(comm in "[ -~]{0,16}", cut in 0usize..1000) {
            let line = stat_line(&comm, "S");
            // The cut ends before field 22 begins.
            let needed = line.rfind(" 777 ").unwrap() + 1;
            let prefix = &line.as_bytes()[..cut % needed];
            let outcome = parse_stat(prefix);
            prop_assert!(outcome.is_err(), "{:?} parsed: {:?}", String::from_utf8_lossy(prefix), outcome);
        }

        #[test]
        fn any_command_name_parses(comm in "[ -~]{0,16}", state in "[A-Za-z]") {
            let line = stat_line(&comm, &state);
            let probe = parse_stat(line.as_bytes()).unwrap();
            prop_assert_eq!(probe.start_time, Some(777));
        }
    }
}
