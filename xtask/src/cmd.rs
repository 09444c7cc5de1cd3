//! Building, describing and running the `cargo` commands that xtask hands its work to.

use std::env;
use std::path::Path;
use std::process::Command;

/// Arguments to `cargo` that start the torture binary; the suite and its options follow.
pub(crate) const TORTURE: [&str; 8] = [
    "run",
    "--release",
    "--quiet",
    "-p",
    "sessionkit-tests",
    "--bin",
    "sessionkit-torture",
    "--",
];

/// Arguments to `cargo` that start the benchmark binary; the suite and its options follow.
pub(crate) const BENCH: [&str; 6] = [
    "run",
    "--release",
    "--quiet",
    "-p",
    "sessionkit-bench",
    "--",
];

/// Returns a `cargo` command that runs in the workspace root.
pub(crate) fn cargo(root: &Path) -> Command {
    // Cargo sets `CARGO` for the programs it runs, so every step uses the toolchain that started xtask.
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(root);
    command
}

/// Renders `command` as a shell line to show before running it and to name it in errors.
///
/// The program is always shown as `cargo`: the full path from `CARGO` would only add noise.
pub(crate) fn describe(command: &Command) -> String {
    let mut words = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            words.push(format!(
                "{}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            ));
        }
    }
    words.push("cargo".to_owned());
    words.extend(command.get_args().map(|arg| quote(&arg.to_string_lossy())));
    words.join(" ")
}

/// Quotes a word that a shell would otherwise split, so a described command can be pasted back.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `command` with the terminal's stdin, stdout and stderr, and fails unless it exits successfully.
pub(crate) fn run(mut command: Command) -> Result<(), String> {
    let shown = describe(&command);
    eprintln!("$ {shown}");
    let status = command
        .status()
        .map_err(|err| format!("failed to start `{shown}`: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_shows_env_then_cargo_then_quoted_args() {
        let mut command = cargo(Path::new("."));
        command
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", "it's", ""]);
        assert_eq!(
            describe(&command),
            r"RUSTDOCFLAGS='-D warnings' cargo doc --workspace 'it'\''s' ''"
        );
    }
}
