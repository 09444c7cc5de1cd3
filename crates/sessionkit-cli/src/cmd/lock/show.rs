//! `sessionkit lock show`: print the state of a file's write lock, changing nothing.
//!
//! The lock library's inspection is printed one field a line for people, or as JSON for
//! scripts. Whatever the lock's state, the command succeeds: the state is the answer.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sessionkit::lock::{Inspection, Liveness, Locker, Status};

use super::Overrides;
use crate::duration;
use crate::failure::Failure;

/// Arguments of `sessionkit lock show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The locked file, not its lock file: the lock of PATH is PATH.lock. PATH need not exist,
    /// but its directory must.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// Print the inspection as one JSON object (pretty-printed) instead of one field a line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Inspects the lock and prints what was found.
pub(crate) fn run(args: &ShowArgs) -> Result<(), Failure> {
    let locker = Locker::with_config(super::config(&Overrides::default())?);
    let inspection = locker.inspect(&args.path)?;
    let text = if args.json {
        let mut json =
            serde_json::to_string_pretty(&inspection).map_err(|source| Failure::Json {
                path: args.path.clone(),
                source,
            })?;
        json.push('\n');
        json
    } else {
        human(&inspection)
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Failure::Stdout)
}

/// The inspection for people: one `field: value` line per field that has a value.
fn human(inspection: &Inspection) -> String {
    let mut out = String::new();
    let mut line = |field: &str, value: &str| {
        // A label or path with a line break in it must not start a line of its own.
        let value = value.replace('\n', "\\n").replace('\r', "\\r");
        let _ = writeln!(out, "{field}: {value}");
    };
    line("lock", &inspection.lock_path.display().to_string());
    line("status", &status_name(inspection.status));
    if inspection.status == Status::Free {
        return out;
    }
    line("owner", &owner(inspection));
    if let Some(liveness) = inspection.liveness {
        line("liveness", &liveness_name(liveness));
    }
    if let Some(age) = inspection.age {
        // Only a held lock is being held; any other lock file just has an age.
        let field = if inspection.status == Status::Held {
            "held for"
        } else {
            "age"
        };
        line(field, &duration::human(age));
    }
    let reasons: Vec<&str> = inspection.reasons.iter().map(|r| r.as_str()).collect();
    line(
        "reasons",
        &if reasons.is_empty() {
            "none".to_owned()
        } else {
            reasons.join(", ")
        },
    );
    let record = inspection.record.as_ref();
    if let Some(generation) = record.and_then(|r| r.generation) {
        line("generation", &generation.to_string());
    }
    if let Some(max_hold_ms) = record.and_then(|r| r.max_hold_ms) {
        let mut max_hold = duration::human(Duration::from_millis(max_hold_ms));
        if inspection.past_max_hold {
            max_hold.push_str(" (past it)");
        }
        line("max hold", &max_hold);
    }
    out
}

/// Who owns the lock, from its record: `pid 1234 (label run-42), program gateway, host h`.
fn owner(inspection: &Inspection) -> String {
    let Some(record) = &inspection.record else {
        return "unknown (the lock file holds no owner record)".to_owned();
    };
    let mut owner = match record.pid {
        Some(pid) => format!("pid {pid}"),
        None => "no pid".to_owned(),
    };
    if let Some(label) = &record.label {
        let _ = write!(owner, " (label {label})");
    }
    if let Some(program) = &record.program {
        let _ = write!(owner, ", program {program}");
    }
    if let Some(host) = &record.hostname {
        let _ = write!(owner, ", host {host}");
    }
    owner
}

/// A status as the JSON form writes it (`held`, `stale`, ...).
fn status_name(status: Status) -> String {
    json_name(serde_json::to_value(status))
}

/// A liveness as the JSON form writes it (`alive`, `dead`, ...).
fn liveness_name(liveness: Liveness) -> String {
    json_name(serde_json::to_value(liveness))
}

/// The string a plain enum serializes to.
fn json_name(value: serde_json::Result<serde_json::Value>) -> String {
    match value {
        Ok(serde_json::Value::String(name)) => name,
        // The library serializes both enums as strings; say so plainly if that changes.
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use sessionkit::lock::{Liveness, Status};

    use super::{liveness_name, status_name};

    #[test]
    fn states_are_named_as_in_json() {
        assert_eq!(status_name(Status::Free), "free");
        assert_eq!(status_name(Status::Held), "held");
        assert_eq!(status_name(Status::Stale), "stale");
        assert_eq!(status_name(Status::Malformed), "malformed");
        assert_eq!(liveness_name(Liveness::Alive), "alive");
        assert_eq!(liveness_name(Liveness::Zombie), "zombie");
        assert_eq!(liveness_name(Liveness::Dead), "dead");
    }
}
