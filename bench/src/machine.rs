//! What the run happened on: CPUs, kernel and the file system of the benchmark directory.

use std::fs;
use std::path::{Path, PathBuf};

/// The CPUs this process may use (what `nproc` prints), or `?`.
pub(crate) fn cpus() -> String {
    std::thread::available_parallelism().map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// The kernel release from `/proc/sys/kernel/osrelease`, or `unknown`.
pub(crate) fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The 1-minute load average from `/proc/loadavg`, or `?`: other work on the machine shows up
/// in every latency.
pub(crate) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// A mounted file system, as `/proc/mounts` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The device field, as `/proc/mounts` names it (`/dev/vda`).
    pub(crate) device: String,
    /// Where it is mounted.
    pub(crate) point: PathBuf,
    /// The file system type (`ext4`).
    pub(crate) kind: String,
}

impl Mount {
    /// The file system type, and for ext4 whether it has a journal: without one, ext4 skips
    /// recently deleted inodes when it makes a file, which makes file creation slow for
    /// minutes after many deletions, and these benchmarks create and delete many files.
    pub(crate) fn describe(&self) -> String {
        match (self.kind.as_str(), ext4_journal(&self.device)) {
            ("ext4", Some(false)) => "ext4 without a journal".to_owned(),
            ("ext4", Some(true)) => "ext4 with a journal".to_owned(),
            _ => self.kind.clone(),
        }
    }
}

/// The file system holding `dir`, from `/proc/mounts`, if known.
pub(crate) fn file_system(dir: &Path) -> Option<Mount> {
    let dir = fs::canonicalize(dir).ok()?;
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mount_of(&dir, &mounts)
}

/// Whether the ext4 file system on `device` has a journal, from
/// `/sys/fs/ext4/<name>/journal_task` (`<none>` without one), if that can be read.
fn ext4_journal(device: &str) -> Option<bool> {
    let device = fs::canonicalize(device).ok()?;
    let name = device.file_name()?.to_str()?;
    journal_from_task(&fs::read_to_string(format!("/sys/fs/ext4/{name}/journal_task")).ok()?)
}

/// Reads `journal_task`: the journal thread's pid, or `<none>`.
fn journal_from_task(text: &str) -> Option<bool> {
    match text.trim() {
        "<none>" => Some(false),
        pid if pid.parse::<u32>().is_ok() => Some(true),
        _ => None,
    }
}

/// The deepest mount in `mounts` (the `/proc/mounts` format) that contains `dir`.
fn mount_of(dir: &Path, mounts: &str) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(point), Some(kind)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        let deeper = best
            .as_ref()
            .is_none_or(|b| point.components().count() >= b.point.components().count());
        // A later mount on the same point hides the earlier one, hence `>=`.
        if dir.starts_with(&point) && deeper {
            best = Some(Mount {
                device: unescape(device),
                point,
                kind: kind.to_owned(),
            });
        }
    }
    best
}

/// Undoes the octal escapes (`\040` for a space) that `/proc/mounts` uses in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw 0 0
tmpfs /tmp/my\\040dir tmpfs rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
";

    #[test]
    fn deepest_mount_wins() {
        let found = mount_of(Path::new("/tmp/my dir/x"), MOUNTS).expect("found");
        assert_eq!(found.point, PathBuf::from("/tmp/my dir"));
        assert_eq!(
            (found.kind.as_str(), found.device.as_str()),
            ("tmpfs", "tmpfs")
        );
        let found = mount_of(Path::new("/tmp/other"), MOUNTS).expect("found");
        assert_eq!(found.point, PathBuf::from("/"));
        assert_eq!(
            (found.kind.as_str(), found.device.as_str()),
            ("ext4", "/dev/vda")
        );
    }

    #[test]
    fn the_journal_task_tells_whether_ext4_has_a_journal() {
        assert_eq!(journal_from_task("<none>\n"), Some(false));
        assert_eq!(journal_from_task("9880\n"), Some(true));
        assert_eq!(journal_from_task(""), None);
        assert_eq!(journal_from_task("jbd2"), None);
    }

    #[test]
    fn load_average_is_a_number() {
        assert!(load_average().parse::<f64>().is_ok());
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape("/plain\\"), "/plain\\");
    }
}
