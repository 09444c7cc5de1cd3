//! The `tools` step: the system programs that tests, torture runs and benchmarks start, and
//! installing the missing ones.
//!
//! A fresh CI machine has the Rust toolchain and Debian's base system; anything else the tests
//! start must be installed by the project itself.
//! As root on a Debian-like system, the step installs the missing programs' packages with
//! `apt-get`; elsewhere it only says what is missing.
//! It never fails CI: a test whose program is missing prints `SKIP:` and the summary lists it,
//! and this step's own `SKIP:` lines say why the program could not be installed.

use std::env;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A program some test starts, and the Debian package that has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tool {
    pub(crate) program: &'static str,
    pub(crate) package: &'static str,
    /// What skips or fails without it, for the `SKIP:` line.
    pub(crate) used_by: &'static str,
}

/// Every program outside the workspace that a test, the torture binary or the benchmark starts.
///
/// `tools_lists_every_program_the_workspace_starts` keeps it complete.
pub(crate) const TOOLS: [Tool; 21] = [
    Tool {
        program: "strace",
        package: "strace",
        used_by: "the CLI's syscall-count and fault-injection tests",
    },
    Tool {
        program: "losetup",
        package: "mount",
        used_by: "the torture runs' power-loss images",
    },
    Tool {
        program: "mount",
        package: "mount",
        used_by: "the tmpfs (ENOSPC) tests and the torture runs' power-loss images",
    },
    Tool {
        program: "umount",
        package: "mount",
        used_by: "the tmpfs (ENOSPC) tests and the torture runs' power-loss images",
    },
    Tool {
        program: "mkfs.ext4",
        package: "e2fsprogs",
        used_by: "the torture runs' power-loss images",
    },
    Tool {
        program: "e2fsck",
        package: "e2fsprogs",
        used_by: "the torture runs' power-loss images",
    },
    Tool {
        program: "debugfs",
        package: "e2fsprogs",
        used_by: "the torture runs' power-loss images",
    },
    Tool {
        program: "chattr",
        package: "e2fsprogs",
        used_by: "the store's test of files a maintenance pass cannot archive or remove",
    },
    Tool {
        program: "cp",
        package: "coreutils",
        used_by: "the torture runs' power-loss images",
    },
    Tool {
        program: "prlimit",
        package: "util-linux",
        used_by: "the kernel tests of atomic-fs",
    },
    Tool {
        program: "setpriv",
        package: "util-linux",
        used_by: "the tests that run a child as another user",
    },
    Tool {
        program: "unshare",
        package: "util-linux",
        used_by: "the pid-namespace tests",
    },
    Tool {
        program: "kill",
        package: "procps",
        used_by: "`sessionkit lock run` and the tests that signal a child",
    },
    Tool {
        program: "mkfifo",
        package: "coreutils",
        used_by: "the tests of special files",
    },
    Tool {
        program: "sleep",
        package: "coreutils",
        used_by: "the tests that need a live child process",
    },
    Tool {
        program: "true",
        package: "coreutils",
        used_by: "the tests that need a process that has exited",
    },
    Tool {
        program: "sync",
        package: "coreutils",
        used_by: "the sweep benchmark",
    },
    Tool {
        program: "touch",
        package: "coreutils",
        used_by: "the sweeper's safety tests",
    },
    Tool {
        program: "date",
        package: "coreutils",
        used_by: "the write-lock tests that write times as JavaScript does",
    },
    Tool {
        program: "sh",
        package: "dash",
        used_by: "the tests that run a shell line",
    },
    Tool {
        program: "bash",
        package: "bash",
        used_by: "the kernel tests of atomic-fs",
    },
];

/// Checks every tool, installs the missing ones where it can, and returns the `SKIP:` lines for
/// those still missing (already printed).
pub(crate) fn run() -> Vec<String> {
    let missing = missing(&TOOLS, |program| find(program).is_some());
    if missing.is_empty() {
        eprintln!("every program the tests start is here");
        return Vec::new();
    }
    let packages = packages(&missing);
    let install = format!("apt-get install {}", packages.join(" "));
    let names: Vec<&str> = missing.iter().map(|tool| tool.program).collect();
    eprintln!("missing: {}", names.join(", "));
    let why_not = match install_packages(&packages) {
        Ok(()) => {
            let still = self::missing(&missing, |program| find(program).is_some());
            if still.is_empty() {
                eprintln!("installed: {}", packages.join(" "));
                return Vec::new();
            }
            return skip_lines(&still, &format!("`{install}` did not provide it"));
        }
        Err(why_not) => why_not,
    };
    skip_lines(&missing, &format!("{why_not}; run `{install}` as root"))
}

/// The tools among `tools` whose program `found` does not find, in order.
fn missing(tools: &[Tool], found: impl Fn(&str) -> bool) -> Vec<Tool> {
    tools
        .iter()
        .copied()
        .filter(|tool| !found(tool.program))
        .collect()
}

/// The packages that hold `tools`, each once, in the order first needed.
fn packages(tools: &[Tool]) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for tool in tools {
        if !packages.contains(&tool.package) {
            packages.push(tool.package);
        }
    }
    packages
}

/// One `SKIP:` line per tool, printed to stdout like the other steps' children print theirs.
fn skip_lines(tools: &[Tool], why: &str) -> Vec<String> {
    tools
        .iter()
        .map(|tool| {
            let line = format!(
                "SKIP: tools: `{}` (Debian package {}) is missing, so {} skip: {why}",
                tool.program, tool.package, tool.used_by
            );
            println!("{line}");
            line
        })
        .collect()
}

/// Looks for `program` where the tests look: `PATH`, then the system directories that a
/// non-root `PATH` often leaves out.
fn find(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Installs `packages` with `apt-get`, or says why it cannot.
fn install_packages(packages: &[&str]) -> Result<(), String> {
    if !is_root() {
        return Err("installing needs root".to_owned());
    }
    let Some(apt_get) = find("apt-get") else {
        return Err("this system has no apt-get".to_owned());
    };
    // A fresh machine may never have fetched the package lists.
    apt(&apt_get, &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&apt_get, &args)
}

fn apt(apt_get: &Path, args: &[&str]) -> Result<(), String> {
    let shown = format!("apt-get {}", args.join(" "));
    eprintln!("$ {shown}");
    // The child's output goes to stderr, so that only `SKIP:` lines and the steps' own reports
    // reach stdout.
    let status = Command::new(apt_get)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .status()
        .map_err(|err| format!("`{shown}` could not start: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Whether this process runs as root, by its real uid in `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().next())
            == Some("0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_missing_tools_are_installed_each_package_once() {
        let found = |program: &str| !["losetup", "umount", "strace"].contains(&program);
        let missing = missing(&TOOLS, found);
        let programs: Vec<&str> = missing.iter().map(|tool| tool.program).collect();
        assert_eq!(programs, ["strace", "losetup", "umount"]);
        assert_eq!(packages(&missing), ["strace", "mount"]);
        assert!(self::missing(&TOOLS, |_| true).is_empty());
    }

    #[test]
    fn a_skip_line_names_the_program_its_package_and_why() {
        let lines = skip_lines(&TOOLS[..1], "installing needs root");
        assert_eq!(
            lines,
            [
                "SKIP: tools: `strace` (Debian package strace) is missing, so the CLI's \
              syscall-count and fault-injection tests skip: installing needs root"
            ]
        );
    }

    /// Every program the workspace's Rust sources start (`Command::new("<program>")`) or that the
    /// power-loss harness looks up (`need("<program>")`, `find_tool("<program>")`) is listed, so a
    /// new test cannot start a program that CI never installs.
    #[test]
    fn tools_lists_every_program_the_workspace_starts() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut started = Vec::new();
        for dir in ["crates", "bench", "tests"] {
            collect_started(&root.join(dir), &mut started);
        }
        // A shell line in atomic-fs's kernel tests starts it.
        started.push("prlimit".to_owned());
        for known in ["strace", "mkfs.ext4", "losetup"] {
            assert!(
                started.iter().any(|program| program == known),
                "{known} not seen"
            );
        }
        for program in &started {
            assert!(
                TOOLS.iter().any(|tool| tool.program == program),
                "`{program}` is started by a test but missing from tools::TOOLS"
            );
        }
    }

    fn collect_started(dir: &Path, started: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            if path.is_dir() {
                collect_started(&path, started);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for call in ["Command::new(\"", "need(\"", "find_tool(\""] {
                    for rest in text.split(call).skip(1) {
                        let program = rest.split('"').next().unwrap();
                        if !started.iter().any(|seen| seen == program) {
                            started.push(program.to_owned());
                        }
                    }
                }
            }
        }
    }
}
