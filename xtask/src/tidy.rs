//! `cargo xtask tidy`: workspace rules that rustc and clippy do not check.
//!
//! Every `.rs` file must open with a `//!` comment that says what the file is for.
//! No file may contain placeholder or debugging macros, or attributes that skip a test or let it pass by panicking.
//! The `tidy_workspace` test runs the same check, so plain `cargo test` enforces it too.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Text that no `.rs` file may contain, each with the reason given to whoever wrote it.
///
/// Each pattern is put together with `concat!` so that this file does not contain it and pass its own check.
const FORBIDDEN: [(&str, &str); 5] = [
    (
        concat!("todo", "!("),
        "finish the code, or return an error and add a FIXME comment",
    ),
    (
        concat!("dbg", "!("),
        "remove the debugging output before committing",
    ),
    (
        concat!("unimplemented", "!("),
        "finish the code, or return an error and add a FIXME comment",
    ),
    (
        concat!("#[", "ignore"),
        "tests always run; assert today's behaviour and add a FIXME comment",
    ),
    (
        concat!("#[", "should_panic"),
        "assert on a returned error, or on today's behaviour with a FIXME comment",
    ),
];

/// A single rule broken at one line of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The path relative to the workspace root, with `/` between components.
    pub(crate) path: String,
    /// The 1-based line number.
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

/// Checks the workspace, prints every violation to stderr, and fails if there is at least one.
pub(crate) fn run(root: &Path) -> Result<(), String> {
    let report = check_workspace(root)?;
    for violation in &report.violations {
        eprintln!("{violation}");
    }
    if report.violations.is_empty() {
        eprintln!("tidy: {} .rs files ok", report.files);
        Ok(())
    } else {
        Err(format!(
            "tidy found {} violation(s) in {} .rs files",
            report.violations.len(),
            report.files
        ))
    }
}

/// What a check of the whole workspace found.
#[derive(Debug)]
pub(crate) struct Report {
    /// How many `.rs` files were checked.
    pub(crate) files: usize,
    pub(crate) violations: Vec<Violation>,
}

/// Checks every `.rs` file under `root`, whether git tracks it or not.
pub(crate) fn check_workspace(root: &Path) -> Result<Report, String> {
    let files = rust_files(root)?;
    let mut violations = Vec::new();
    for file in &files {
        let display = relative_display(root, file);
        let bytes = match fs::read(file) {
            Ok(bytes) => bytes,
            // Others edit the workspace while tidy runs, and a file deleted since the walk has nothing left to check.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(format!("failed to read `{}`: {err}", file.display())),
        };
        match String::from_utf8(bytes) {
            Ok(text) => violations.extend(check_source(&display, &text)),
            Err(_) => violations.push(Violation {
                path: display,
                line: 1,
                message: "the file is not valid UTF-8, so rustc cannot compile it".to_owned(),
            }),
        }
    }
    Ok(Report {
        files: files.len(),
        violations,
    })
}

/// Checks the text of one file; `path` is used only to label the violations.
pub(crate) fn check_source(path: &str, text: &str) -> Vec<Violation> {
    let violation = |line: usize, message: String| Violation {
        path: path.to_owned(),
        line,
        message,
    };
    let mut violations = Vec::new();

    // rustc skips a leading byte order mark, so tidy does too.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text
        .lines()
        .enumerate()
        .find(|(_, line)| !line.trim().is_empty());
    match first {
        Some((_, line)) if line.trim_start().starts_with("//!") => {}
        Some((index, _)) => violations.push(violation(
            index + 1,
            "the file must start with a `//!` comment that says what it is for".to_owned(),
        )),
        None => violations.push(violation(
            1,
            "the file is empty; it must start with a `//!` comment that says what it is for"
                .to_owned(),
        )),
    }

    for (index, line) in text.lines().enumerate() {
        for (pattern, advice) in FORBIDDEN {
            if line.contains(pattern) {
                violations.push(violation(
                    index + 1,
                    format!("`{pattern}` is not allowed: {advice}"),
                ));
            }
        }
    }
    violations
}

/// Lists every `.rs` file under `root`, sorted so reports come out in the same order on every run.
///
/// Directories named `target` hold build output, and hidden directories such as `.git` hold no sources.
/// Symbolic links are not followed, so nothing is checked twice and a link cannot lead outside the workspace.
fn rust_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // A directory removed by someone else since we listed its parent has nothing left to check.
            Err(err) if err.kind() == io::ErrorKind::NotFound && dir != root => continue,
            Err(err) => {
                return Err(format!(
                    "failed to read directory `{}`: {err}",
                    dir.display()
                ));
            }
        };
        for entry in entries {
            let entry = entry
                .map_err(|err| format!("failed to read directory `{}`: {err}", dir.display()))?;
            let path = entry.path();
            let file_type = entry
                .file_type()
                .map_err(|err| format!("failed to inspect `{}`: {err}", path.display()))?;
            let name = entry.file_name();
            if file_type.is_dir() {
                let skip = name == "target" || name.to_string_lossy().starts_with('.');
                if !skip {
                    pending.push(path);
                }
            } else if file_type.is_file() && path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Shows `path` relative to `root` with `/` separators, so reports read the same on every OS.
fn relative_display(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|component| component.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::process;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn tidy_workspace() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives one level below the workspace root");
        let report = check_workspace(root).unwrap_or_else(|err| panic!("{err}"));
        let listing: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
        assert!(
            listing.is_empty(),
            "tidy found {} violation(s):\n{}",
            listing.len(),
            listing.join("\n")
        );
        // The walk must at least find this file, or it is checking nothing.
        assert!(report.files > 0);
    }

    fn lines_of(violations: &[Violation]) -> Vec<usize> {
        violations.iter().map(|v| v.line).collect()
    }

    #[test]
    fn clean_file_passes() {
        // Words close to the forbidden patterns must not be flagged.
        let text = "//! A clean file.\n\n\
                    // TODO-free: todo items live in the tracker.\n\
                    #[cfg(test)]\n\
                    #[test]\n\
                    fn debug() { let todo = 1; let dbg = todo; tracing::debug!(dbg); }\n";
        assert_eq!(check_source("clean.rs", text), Vec::new());
    }

    #[test]
    fn doc_comment_may_follow_blank_lines_and_a_byte_order_mark() {
        assert_eq!(check_source("a.rs", "\n  \n//! Doc.\n"), Vec::new());
        assert_eq!(check_source("a.rs", "\u{feff}//! Doc.\n"), Vec::new());
    }

    #[test]
    fn file_without_doc_comment_is_flagged() {
        let violations = check_source("src/lib.rs", "fn main() {}\n");
        assert_eq!(lines_of(&violations), [1]);
        assert_eq!(violations[0].path, "src/lib.rs");
        assert!(violations[0].message.contains("`//!`"), "{violations:?}");
    }

    #[test]
    fn plain_and_outer_doc_comments_are_not_enough() {
        for first in [
            "// A comment.",
            "/// An item doc.",
            "/*! A block. */",
            "#![deny(missing_docs)]",
        ] {
            let text = format!("\n\n{first}\n//! Too late.\n");
            let violations = check_source("a.rs", &text);
            assert_eq!(
                lines_of(&violations),
                [3],
                "first line {first:?}: {violations:?}"
            );
        }
    }

    #[test]
    fn empty_file_is_flagged() {
        for text in ["", "\n\n   \n"] {
            let violations = check_source("empty.rs", text);
            assert_eq!(lines_of(&violations), [1], "{text:?}");
            assert!(violations[0].message.contains("empty"), "{violations:?}");
        }
    }

    // The inputs below are literal code, not built from FORBIDDEN, so a pattern missing from
    // the list or misspelt in it fails a test. `\x21` is `!` and `\x23` is `#`, so this file
    // does not contain the constructs and pass its own check.

    #[test]
    fn each_forbidden_construct_is_flagged_at_its_line() {
        for (line, named) in [
            ("    todo\x21()", "todo"),
            ("    let _ = todo\x21(\"later\");", "todo"),
            ("    dbg\x21(x);", "dbg"),
            ("    unimplemented\x21()", "unimplemented"),
            ("\x23[ignore]", "ignore"),
            ("\x23[ignore = \"slow\"]", "ignore"),
            ("\x23[should_panic]", "should_panic"),
            ("\x23[should_panic(expected = \"boom\")]", "should_panic"),
        ] {
            let text = format!("//! Doc.\n\nfn f() {{\n{line}\n}}\n");
            let violations = check_source("f.rs", &text);
            assert_eq!(lines_of(&violations), [4], "{line}: {violations:?}");
            assert!(
                violations[0].message.contains(named),
                "{line}: {violations:?}"
            );
        }
    }

    #[test]
    fn every_pattern_on_a_line_is_reported() {
        let text = "//! Doc.\ntodo\x21(dbg\x21(1))\nok\n\x23[ignore]\n";
        let violations = check_source("f.rs", text);
        assert_eq!(lines_of(&violations), [2, 2, 4], "{violations:?}");
    }

    #[test]
    fn missing_doc_and_pattern_are_both_reported() {
        let text = "fn f() {\n    dbg\x21(1);\n}\n";
        assert_eq!(lines_of(&check_source("f.rs", text)), [1, 2]);
    }

    #[test]
    fn violation_reads_path_line_message() {
        let violation = Violation {
            path: "crates/a/src/lib.rs".to_owned(),
            line: 7,
            message: "bad".to_owned(),
        };
        assert_eq!(violation.to_string(), "crates/a/src/lib.rs:7: bad");
    }

    /// A scratch directory that removes itself, so the walk can be tested on real files without a dependency.
    struct ScratchDir(PathBuf);

    impl ScratchDir {
        fn new(name: &str) -> Self {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let dir = std::env::temp_dir().join(format!("xtask-{name}-{}-{nanos}", process::id()));
            fs::create_dir_all(&dir).expect("create scratch directory");
            Self(dir)
        }

        fn write(&self, relative: &str, text: &str) {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().expect("a file has a parent directory"))
                .expect("create parent directory");
            fs::write(path, text).expect("write scratch file");
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            // Leftovers in the temp directory are harmless, and a panic here would hide the real failure.
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn walk_checks_nested_files_and_skips_target_and_hidden_directories() {
        let bad = "fn f() { todo\x21() }\n";
        let dir = ScratchDir::new("tidy-walk");
        dir.write("crates/a/src/lib.rs", "//! Fine.\n");
        dir.write("crates/a/src/bad.rs", bad);
        dir.write("crates/a/notes.txt", bad);
        dir.write("target/debug/build/out.rs", bad);
        dir.write("crates/a/target/gen.rs", bad);
        dir.write(".git/hooks/x.rs", bad);
        dir.write(".hidden/x.rs", bad);

        let report = check_workspace(&dir.0).expect("walk the scratch directory");
        assert_eq!(report.files, 2);
        let listing: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(listing.len(), 2, "{listing:#?}");
        assert!(
            listing[0].starts_with("crates/a/src/bad.rs:1: the file must start"),
            "{listing:#?}"
        );
        assert!(
            listing[1].starts_with("crates/a/src/bad.rs:1: `todo\x21(`"),
            "{listing:#?}"
        );
    }

    #[test]
    fn walk_flags_files_that_are_not_utf8() {
        let dir = ScratchDir::new("tidy-utf8");
        fs::write(dir.0.join("latin1.rs"), b"//! Caf\xe9.\n").expect("write scratch file");
        let report = check_workspace(&dir.0).expect("walk the scratch directory");
        assert_eq!(lines_of(&report.violations), [1]);
        assert!(
            report.violations[0].message.contains("UTF-8"),
            "{:?}",
            report.violations
        );
    }
}
