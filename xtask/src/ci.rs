//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure.
//!
//! `.ci/run` runs only this command, so running it locally reproduces CI.
//! Child output goes straight to the terminal.
//! Stdout is also read line by line, because the torture and benchmark binaries print `SKIP:` lines for the parts this machine cannot run, and the summary repeats them so they are not lost in the log.

use std::env;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cmd, tidy, tools};

/// The steps, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Tools,
    Fmt,
    Clippy,
    Test,
    Doc,
    Tidy,
    Torture,
    Bench,
    Readme,
}

impl Step {
    const ALL: [Step; 9] = [
        Step::Tools,
        Step::Fmt,
        Step::Clippy,
        Step::Test,
        Step::Doc,
        Step::Tidy,
        Step::Torture,
        Step::Bench,
        Step::Readme,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Tools => "tools",
            Step::Fmt => "fmt",
            Step::Clippy => "clippy",
            Step::Test => "test",
            Step::Doc => "doc",
            Step::Tidy => "tidy",
            Step::Torture => "torture --quick",
            Step::Bench => "bench --quick",
            Step::Readme => "readme",
        }
    }

    /// Whether `--skip-slow` leaves the step out: these build in release mode and then run for a while.
    fn is_slow(self) -> bool {
        matches!(self, Step::Torture | Step::Bench | Step::Readme)
    }
}

/// What happened to one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Passed(Duration),
    Failed(Duration),
    /// An earlier step failed, and CI stops at the first failure.
    NotRun,
    /// Left out by `--skip-slow`.
    SkippedSlow,
}

/// Runs every step and prints the summary; returns whether all the steps that ran passed.
pub(crate) fn run(root: &Path, skip_slow: bool) -> bool {
    let mut ci = Ci {
        root,
        color: color_override(),
        skip_lines: Vec::new(),
    };
    let mut results = Vec::new();
    let mut failed = false;
    for step in Step::ALL {
        let outcome = if skip_slow && step.is_slow() {
            Outcome::SkippedSlow
        } else if failed {
            Outcome::NotRun
        } else {
            eprintln!("\n==> ci step `{}`", step.name());
            let start = Instant::now();
            let result = ci.run_step(step);
            let elapsed = start.elapsed();
            match result {
                Ok(()) => Outcome::Passed(elapsed),
                Err(message) => {
                    eprintln!("error: ci step `{}` failed: {message}", step.name());
                    failed = true;
                    Outcome::Failed(elapsed)
                }
            }
        };
        results.push((step, outcome));
    }
    // If nobody reads our stdout any more, there is nowhere left to report to, and the exit code still tells.
    let _ = io::stdout().write_all(summary(&results, &ci.skip_lines).as_bytes());
    !failed
}

/// Everything the steps share.
struct Ci<'a> {
    root: &'a Path,
    /// The `CARGO_TERM_COLOR` value to give every child, if we set one.
    color: Option<&'static str>,
    /// Every stdout line starting with `SKIP:` printed by any child so far.
    skip_lines: Vec<String>,
}

impl Ci<'_> {
    fn run_step(&mut self, step: Step) -> Result<(), String> {
        match step {
            Step::Tools => {
                self.skip_lines.extend(tools::run());
                Ok(())
            }
            Step::Fmt => self.tee(&["fmt", "--all", "--", "--check"]),
            Step::Clippy => self.tee(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]),
            Step::Test => {
                let mut command = cmd::cargo(self.root);
                if std::env::var_os("CI").is_some() {
                    // On CI a property test's failing case is reported as found, not shrunk:
                    // shrinking a long history of store operations can outlast the job, and the
                    // case is printed whole, for a local run to shrink.
                    command.env("PROPTEST_MAX_SHRINK_ITERS", "0");
                }
                if self.has_nextest() {
                    command.args([
                        "nextest",
                        "run",
                        "--workspace",
                        "--all-features",
                        "--profile",
                        "ci",
                    ]);
                } else {
                    eprintln!(
                        "cargo-nextest is not installed, so the tests run under `cargo test`"
                    );
                    command.args(["test", "--workspace", "--all-features"]);
                }
                self.tee_command(command)?;
                // nextest does not run doc tests, so they get a run of their own either way.
                self.tee(&["test", "--workspace", "--all-features", "--doc"])
            }
            Step::Doc => {
                let mut command = cmd::cargo(self.root);
                command.env("RUSTDOCFLAGS", "-D warnings").args([
                    "doc",
                    "--workspace",
                    "--no-deps",
                    "--all-features",
                ]);
                self.tee_command(command)
            }
            Step::Tidy => tidy::run(self.root),
            Step::Torture => {
                let mut args = cmd::TORTURE.to_vec();
                args.extend(["all", "--quick"]);
                self.tee(&args)
            }
            Step::Bench => {
                let mut args = cmd::BENCH.to_vec();
                args.extend(["all", "--quick"]);
                self.tee(&args)
            }
            Step::Readme => {
                // The README's set-up commands run exactly as written, so they cannot rot; the
                // test command is this very run, so it is only checked to be there.
                let readme = std::fs::read_to_string(self.root.join("README.md"))
                    .map_err(|err| format!("failed to read README.md: {err}"))?;
                let commands = setup_commands(&readme)?;
                if !commands.iter().any(|c| c == "cargo xtask ci") {
                    return Err("the README's set-up block does not give `cargo xtask ci`".into());
                }
                for line in commands.iter().filter(|c| *c != "cargo xtask ci") {
                    let mut command = Command::new("sh");
                    command.current_dir(self.root).args(["-c", line]);
                    self.tee_command(command)?;
                }
                Ok(())
            }
        }
    }

    /// Whether `cargo nextest` works here; CI machines have it, but a contributor's may not.
    fn has_nextest(&self) -> bool {
        cmd::cargo(self.root)
            .args(["nextest", "--version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn tee(&mut self, args: &[&str]) -> Result<(), String> {
        let mut command = cmd::cargo(self.root);
        command.args(args);
        self.tee_command(command)
    }

    /// Runs `command`, copying its stdout and stderr to ours line by line and keeping the
    /// `SKIP:` lines of both (nextest reports a test's captured output on stderr).
    fn tee_command(&mut self, mut command: Command) -> Result<(), String> {
        // Described before the colour setting is added, which would only clutter every line.
        let shown = cmd::describe(&command);
        eprintln!("$ {shown}");
        if let Some(color) = self.color {
            command.env("CARGO_TERM_COLOR", color);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("failed to start `{shown}`: {err}"))?;
        // Stderr is drained on its own thread so a child that fills one pipe never blocks.
        let stderr_copier = child.stderr.take().map(|stderr| {
            std::thread::spawn(move || {
                let mut skips = Vec::new();
                let copied = copy_lines(stderr, &mut io::stderr(), &mut skips);
                (copied, skips)
            })
        });
        let mut copied = match child.stdout.take() {
            Some(stdout) => copy_lines(stdout, &mut io::stdout(), &mut self.skip_lines),
            None => Ok(()),
        };
        if let Some(handle) = stderr_copier {
            match handle.join() {
                Ok((stderr_copied, skips)) => {
                    self.skip_lines.extend(skips);
                    copied = copied.and(stderr_copied);
                }
                Err(_) => copied = Err(io::Error::other("the stderr copier panicked")),
            }
        }
        if copied.is_err() {
            // Nobody reads the pipe any more, so a child still writing would block forever; the error below says why.
            let _ = child.kill();
        }
        let status = child
            .wait()
            .map_err(|err| format!("failed to wait for `{shown}`: {err}"))?;
        copied.map_err(|err| format!("failed to read the output of `{shown}`: {err}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{shown}` failed ({status})"))
        }
    }
}

/// The commands of the README's set-up block: the first `sh` code block after the heading that
/// starts with `## Set-up`, one command per line.
fn setup_commands(readme: &str) -> Result<Vec<String>, String> {
    let after = readme
        .split("\n## Set-up")
        .nth(1)
        .ok_or("README.md has no `## Set-up` section")?;
    let block = after
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .ok_or("the README's set-up section has no ```sh block")?;
    let commands: Vec<String> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if commands.is_empty() {
        return Err("the README's set-up block is empty".into());
    }
    Ok(commands)
}

/// Copies `input` to `output` a line at a time and appends each new line starting with `SKIP:`
/// (after leading blanks) to `skip_lines`; the same skip reported twice is kept once.
///
/// Only a read error is returned.
/// If `output` fails, copying stops but reading goes on, so the child never dies of a broken pipe because of us.
fn copy_lines(
    input: impl Read,
    output: &mut impl Write,
    skip_lines: &mut Vec<String>,
) -> io::Result<()> {
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let mut echo = true;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if echo {
            // Flushing every line keeps the child's stdout in order with its stderr, which goes straight to the terminal.
            echo = output
                .write_all(&line)
                .and_then(|()| output.flush())
                .is_ok();
        }
        // Test runners indent captured output, so leading blanks are ignored.
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.starts_with("SKIP:") && !skip_lines.iter().any(|seen| seen == text) {
            skip_lines.push(text.to_owned());
        }
    }
}

/// Returns the `CARGO_TERM_COLOR` value to give the children, or `None` to leave the variable alone.
///
/// Children write their stdout into our pipe, so they cannot see that it ends at a terminal.
/// A value the user set always wins.
fn color_override() -> Option<&'static str> {
    if env::var_os("CARGO_TERM_COLOR").is_none() && io::stdout().is_terminal() {
        Some("always")
    } else {
        None
    }
}

/// Formats the table printed after the last step; its final line is `ci: N passed, M failed`.
fn summary(results: &[(Step, Outcome)], skip_lines: &[String]) -> String {
    let mut out = String::from("\nci summary\n");
    let mut passed = 0;
    let mut failed = 0;
    let mut skipped_slow = false;
    for &(step, outcome) in results {
        let (result, time) = match outcome {
            Outcome::Passed(time) => {
                passed += 1;
                ("ok", Some(time))
            }
            Outcome::Failed(time) => {
                failed += 1;
                ("FAILED", Some(time))
            }
            Outcome::NotRun => ("not run (an earlier step failed)", None),
            Outcome::SkippedSlow => {
                skipped_slow = true;
                ("skipped (--skip-slow)", None)
            }
        };
        let line = match time {
            Some(time) => format!(
                "  {:<16} {result:<7} {:>8.1}s",
                step.name(),
                time.as_secs_f64()
            ),
            None => format!("  {:<16} {result}", step.name()),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }

    out.push_str("\nskipped (the machine could not run these)\n");
    if skip_lines.is_empty() {
        out.push_str("  none\n");
    }
    for line in skip_lines {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }

    if skipped_slow {
        out.push_str("\nnote: --skip-slow left out the torture and benchmark runs; CI runs them\n");
    }
    out.push_str(&format!("\nci: {passed} passed, {failed} failed\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setup_commands_are_the_first_sh_block_of_the_setup_section() {
        let readme = "# x\n\n```sh\nnot this\n```\n\n## Set-up: two commands\n\ntext\n\n```sh\ncargo run -- simulate\n\n# a comment\ncargo xtask ci\n```\n\n```sh\nnor this\n```\n";
        assert_eq!(
            setup_commands(readme).unwrap(),
            ["cargo run -- simulate", "cargo xtask ci"]
        );
        assert!(setup_commands("# x\n```sh\nls\n```\n").is_err());
        assert!(setup_commands("## Set-up\nno block\n").is_err());
    }

    #[test]
    fn the_readme_gives_the_two_setup_commands() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert_eq!(
            setup_commands(&readme).unwrap(),
            [
                "cargo run --release -p sessionkit-cli -- simulate",
                "cargo xtask ci"
            ]
        );
    }

    #[test]
    fn copy_lines_echoes_everything_and_keeps_skip_lines() {
        let input =
            "table row\nSKIP: O_DIRECT is not supported here\n  SKIP: indented\nSKIP: no newline";
        let mut output = Vec::new();
        let mut skips = Vec::new();
        copy_lines(input.as_bytes(), &mut output, &mut skips).expect("reading a slice cannot fail");
        assert_eq!(output, input.as_bytes());
        assert_eq!(
            skips,
            [
                "SKIP: O_DIRECT is not supported here",
                "SKIP: indented",
                "SKIP: no newline"
            ]
        );
    }

    /// A writer that fails, like a stdout whose reader has gone away.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn copy_lines_keeps_reading_after_output_fails() {
        let mut skips = Vec::new();
        copy_lines("a\nSKIP: later\n".as_bytes(), &mut Closed, &mut skips)
            .expect("a failed echo is not an error");
        assert_eq!(skips, ["SKIP: later"]);
    }

    #[test]
    fn summary_of_a_clean_run_counts_every_step() {
        let results: Vec<_> = Step::ALL
            .iter()
            .map(|&step| (step, Outcome::Passed(Duration::from_millis(1500))))
            .collect();
        let text = summary(&results, &["SKIP: fsync of directories".to_owned()]);
        assert!(
            text.contains("  fmt              ok           1.5s\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "skipped (the machine could not run these)\n  SKIP: fsync of directories\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("\nci: 9 passed, 0 failed\n"), "{text}");
        assert!(!text.contains("--skip-slow"), "{text}");
    }

    #[test]
    fn summary_after_a_failure_with_skip_slow() {
        let second = Duration::from_secs(1);
        let results = [
            (Step::Fmt, Outcome::Passed(second)),
            (Step::Clippy, Outcome::Failed(second)),
            (Step::Test, Outcome::NotRun),
            (Step::Torture, Outcome::SkippedSlow),
        ];
        let text = summary(&results, &[]);
        assert!(
            text.contains("  clippy           FAILED       1.0s\n"),
            "{text}"
        );
        assert!(text.contains("  test             not run"), "{text}");
        assert!(
            text.contains("  torture --quick  skipped (--skip-slow)\n"),
            "{text}"
        );
        assert!(text.contains("note: --skip-slow"), "{text}");
        assert!(text.ends_with("\nci: 1 passed, 1 failed\n"), "{text}");
    }
}
