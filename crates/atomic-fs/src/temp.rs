//! Temp-file names and the cleanup of orphan temp files left by crashes.
//!
//! A temp file is named `.<target name>.<pid>.<16 hex digits>.sktmp` and lives beside its
//! target. The pattern is strict so that cleanup can never mistake another program's file for
//! one of ours.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::{Ctx, Operation, Result, Step};
use crate::fs::FileSystem;

/// The suffix every temp file of this crate ends with.
pub const TEMP_SUFFIX: &str = ".sktmp";

/// File names are limited to 255 bytes on the common file systems; the target's name is cut
/// so the temp name always fits (1 dot + name + dot + 10 pid digits + dot + 16 hex + suffix).
const MAX_NAME_PART: usize = 255 - (1 + 1 + 10 + 1 + 16 + TEMP_SUFFIX.len());

/// A fresh temp-file name for `target_name`.
pub(crate) fn temp_name(target_name: &OsStr) -> OsString {
    let name = target_name.to_string_lossy();
    let mut cut = name.len().min(MAX_NAME_PART);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        ".{}.{}.{:016x}{}",
        &name[..cut],
        std::process::id(),
        random_u64(),
        TEMP_SUFFIX
    )
    .into()
}

/// True if `name` has the exact shape of this crate's temp files.
///
/// ```
/// use sessionkit_atomic_fs::is_temp_file_name;
/// use std::ffi::OsStr;
///
/// assert!(is_temp_file_name(OsStr::new(".sessions.json.4242.00c0ffee00c0ffee.sktmp")));
/// assert!(!is_temp_file_name(OsStr::new("sessions.json.tmp")));
/// ```
pub fn is_temp_file_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        // Names we make are valid UTF-8 (the target part is converted lossily).
        return false;
    };
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
    else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '.');
    let (Some(hex), Some(pid), Some(target)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    hex.len() == 16
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && (1..=10).contains(&pid.len())
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !target.is_empty()
}

/// 64 random-enough bits for unique names: SipHash keyed by the standard library's random
/// per-thread keys, over a counter and the clock. Uniqueness is also enforced by `O_EXCL`.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}

/// One temp file that [`remove_orphan_temps`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemovedTemp {
    /// The removed file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub len: u64,
    /// How long ago it was last modified.
    pub age: Duration,
}

/// A temp file that [`remove_orphan_temps`] could not remove or inspect.
#[derive(Debug)]
#[non_exhaustive]
pub struct TempFailure {
    /// The file.
    pub path: PathBuf,
    /// The step that failed ([`Step::Inspect`] or [`Step::RemoveTemp`]).
    pub step: Step,
    /// The operating system's error.
    pub error: io::Error,
}

/// What [`remove_orphan_temps`] did in one directory.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct OrphanReport {
    /// The temp files removed, in name order.
    pub removed: Vec<RemovedTemp>,
    /// Temp files kept because they are younger than the age limit (a write may be in flight).
    pub kept_young: Vec<PathBuf>,
    /// Temp files that could not be inspected or removed; the sweep went on past them.
    pub failed: Vec<TempFailure>,
}

/// Removes this crate's temp files in `dir` last modified more than `older_than` ago.
///
/// Only regular files whose names match [`is_temp_file_name`] are considered; every other
/// file, and anything that is a symlink or directory, is left alone. A temp file younger than
/// `older_than` may belong to a write still in flight and is kept. A missing directory is an
/// empty report, not an error. A file that cannot be inspected or removed is reported in
/// [`OrphanReport::failed`] and the sweep goes on.
///
/// The age comes from the file's modification time against the system clock; a file dated in
/// the future counts as age zero.
///
/// # Errors
///
/// Fails only if the directory exists but cannot be listed.
pub fn remove_orphan_temps(dir: impl AsRef<Path>, older_than: Duration) -> Result<OrphanReport> {
    remove_orphan_temps_with(&*crate::fs::real(), dir.as_ref(), older_than)
}

pub(crate) fn remove_orphan_temps_with(
    fs: &dyn FileSystem,
    dir: &Path,
    older_than: Duration,
) -> Result<OrphanReport> {
    let ctx = Ctx::new(Operation::Cleanup, dir);
    let mut report = OrphanReport::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(ctx.io(Step::ReadDir, dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ctx.io(Step::ReadDir, dir, e))?;
        let name = entry.file_name();
        if is_temp_file_name(&name) {
            names.push(name);
        }
    }
    names.sort();
    let now = SystemTime::now();
    for name in names {
        let path = dir.join(&name);
        let meta = match fs.symlink_metadata(&path) {
            Ok(meta) => meta,
            // Renamed into place or removed by its writer since the listing: not an orphan.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => {
                report.failed.push(TempFailure {
                    path,
                    step: Step::Inspect,
                    error,
                });
                continue;
            }
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or(Duration::ZERO);
        if age <= older_than {
            report.kept_young.push(path);
            continue;
        }
        match fs.remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), age_ms = age.as_millis() as u64, "removed orphan temp file");
                report.removed.push(RemovedTemp {
                    path,
                    len: meta.len(),
                    age,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => report.failed.push(TempFailure {
                path,
                step: Step::RemoveTemp,
                error,
            }),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A target name as callers pass them: any text, often with dots, digits and our own
    /// suffix in it, sometimes longer than a file name may be.
    fn target() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{1,40}",
            "[a-z0-9.]{1,20}",
            "[a-z]{1,8}\\.[0-9]{1,10}\\.[0-9a-f]{16}\\.sktmp",
            "\\PC{200,300}",
        ]
    }

    /// The parts of a name of the documented shape `.<target>.<pid>.<16 hex>.sktmp`.
    fn parts() -> impl Strategy<Value = (String, String, String)> {
        (
            target(),
            prop_oneof![
                Just("0".to_owned()),
                Just("9999999999".to_owned()),
                Just(u32::MAX.to_string()),
                "[0-9]{1,10}",
            ],
            prop_oneof![
                Just("0000000000000000".to_owned()),
                Just("ffffffffffffffff".to_owned()),
                "[0-9a-f]{16}",
            ],
        )
    }

    fn name(target: &str, pid: &str, hex: &str) -> String {
        format!(".{target}.{pid}.{hex}.sktmp")
    }

    proptest! {
        #[test]
        fn every_generated_temp_name_is_recognised(target in target()) {
            let made = temp_name(OsStr::new(&target));
            prop_assert!(is_temp_file_name(&made), "{:?}", made);
            prop_assert!(made.len() <= 255, "{}", made.len());
            // The pid and hex parts are exactly what the docs say, whatever the target.
            let made = made.to_str().expect("temp names are UTF-8");
            let rest = made.strip_suffix(".sktmp").expect("the suffix");
            let (rest, hex) = rest.rsplit_once('.').expect("the hex part");
            let (_, pid) = rest.rsplit_once('.').expect("the pid part");
            prop_assert_eq!(pid, std::process::id().to_string());
            prop_assert_eq!(hex.len(), 16);
        }

        #[cfg(unix)]
        #[test]
        fn a_target_that_is_not_utf8_still_makes_a_recognised_name(
            mut bytes in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            use std::os::unix::ffi::OsStrExt;
            bytes.push(0xff);
            let made = temp_name(OsStr::from_bytes(&bytes));
            prop_assert!(is_temp_file_name(&made), "{:?}", made);
        }

        #[test]
        fn every_name_of_the_documented_shape_is_recognised((target, pid, hex) in parts()) {
            let name = name(&target, &pid, &hex);
            prop_assert!(is_temp_file_name(OsStr::new(&name)), "{:?}", name);
        }

        #[test]
        fn a_wrong_prefix_or_suffix_is_not_recognised(
            (target, pid, hex) in parts(),
            prefix in proptest::sample::select(vec!["", "_", " ", "x"]),
            suffix in proptest::sample::select(vec![
                "", ".tmp", ".SKTMP", "sktmp", ".sktm", ".sktmp~", ".sktmp.bak", ". sktmp",
            ]),
            wrong_prefix in any::<bool>(),
        ) {
            // A target that starts with a dot would bring its own leading dot.
            let target = target.trim_start_matches('.');
            prop_assume!(!target.is_empty());
            let name = if wrong_prefix {
                format!("{prefix}{target}.{pid}.{hex}.sktmp")
            } else {
                format!(".{target}.{pid}.{hex}{suffix}")
            };
            prop_assert!(!is_temp_file_name(OsStr::new(&name)), "{:?}", name);
        }

        #[test]
        fn a_random_part_of_the_wrong_length_or_alphabet_is_not_recognised(
            (target, pid, _) in parts(),
            hex in prop_oneof![
                "[0-9a-f]{0,15}",
                "[0-9a-f]{17,32}",
                // One character that is not a lower-case hex digit, anywhere in sixteen.
                ("[0-9a-f]{15}", 0_usize..16, "[A-Fg-zG-Z_ .+-]").prop_map(|(mut hex, at, bad)| {
                    hex.insert_str(at, &bad);
                    hex
                }),
            ],
        ) {
            let name = name(&target, &pid, &hex);
            prop_assert!(!is_temp_file_name(OsStr::new(&name)), "{:?}", name);
        }

        #[test]
        fn a_pid_of_the_wrong_length_or_alphabet_is_not_recognised(
            (target, _, hex) in parts(),
            pid in prop_oneof![
                Just(String::new()),
                Just("12345678901".to_owned()),
                "[0-9]{11,20}",
                "[0-9]{0,4}[a-z+ -][0-9]{0,4}",
            ],
        ) {
            let name = name(&target, &pid, &hex);
            prop_assert!(!is_temp_file_name(OsStr::new(&name)), "{:?}", name);
        }

        #[test]
        fn an_empty_target_is_not_recognised((_, pid, hex) in parts()) {
            let name = name("", &pid, &hex);
            prop_assert!(!is_temp_file_name(OsStr::new(&name)), "{:?}", name);
        }

        #[test]
        fn any_name_is_judged_without_panicking(name in "\\PC*", bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Whatever is recognised ends in the suffix and starts with a dot.
            if is_temp_file_name(OsStr::new(&name)) {
                prop_assert!(name.starts_with('.') && name.ends_with(".sktmp"), "{:?}", name);
            }
            #[cfg(unix)]
            {
                use std::os::unix::ffi::OsStrExt;
                let name = OsStr::from_bytes(&bytes);
                if is_temp_file_name(name) {
                    prop_assert!(name.to_str().is_some(), "{:?}", name);
                }
            }
            #[cfg(not(unix))]
            let _ = bytes;
        }
    }

    #[test]
    fn generated_names_are_recognised_and_unique() {
        let a = temp_name(OsStr::new("sessions.json"));
        let b = temp_name(OsStr::new("sessions.json"));
        assert_ne!(a, b);
        assert!(is_temp_file_name(&a), "{a:?}");
        assert!(a.to_str().unwrap().starts_with(".sessions.json."));
    }

    #[test]
    fn long_names_are_cut_to_fit() {
        let long = "é".repeat(200);
        let name = temp_name(OsStr::new(&long));
        assert!(name.len() <= 255, "{}", name.len());
        assert!(is_temp_file_name(&name));
    }

    #[test]
    fn near_misses_are_not_temp_names() {
        for name in [
            "sessions.json",
            ".sessions.json.sktmp",
            ".x.12.00c0ffee00c0ffe.sktmp",
            ".x.12.00c0ffee00c0ffeeg.sktmp",
            ".x.12.00C0FFEE00C0FFEE.sktmp",
            ".x.1a.00c0ffee00c0ffee.sktmp",
            "..12.00c0ffee00c0ffee.sktmp",
            "x.12.00c0ffee00c0ffee.sktmp",
            ".x.12345678901.00c0ffee00c0ffee.sktmp",
            ".x.12.00c0ffee00c0ffee.tmp",
            ".fs-safe-replace.12.3e4f.tmp",
        ] {
            assert!(!is_temp_file_name(OsStr::new(name)), "{name}");
        }
        assert!(is_temp_file_name(OsStr::new(
            ".a.b.c.1.0123456789abcdef.sktmp"
        )));
    }
}
