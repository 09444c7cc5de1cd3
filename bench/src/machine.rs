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

/// The file system type and mount point holding `dir`, from `/proc/mounts`, if known.
pub(crate) fn file_system(dir: &Path) -> Option<(String, PathBuf)> {
    let dir = fs::canonicalize(dir).ok()?;
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mount_of(&dir, &mounts)
}

/// The deepest mount in `mounts` (the `/proc/mounts` format) that contains `dir`.
fn mount_of(dir: &Path, mounts: &str) -> Option<(String, PathBuf)> {
    let mut best: Option<(String, PathBuf)> = None;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_device), Some(point), Some(kind)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        let deeper = best
            .as_ref()
            .is_none_or(|(_, b)| point.components().count() >= b.components().count());
        // A later mount on the same point hides the earlier one, hence `>=`.
        if dir.starts_with(&point) && deeper {
            best = Some((kind.to_owned(), point));
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
        let found = mount_of(Path::new("/tmp/my dir/x"), MOUNTS);
        assert_eq!(
            found,
            Some(("tmpfs".to_owned(), PathBuf::from("/tmp/my dir")))
        );
        let found = mount_of(Path::new("/tmp/other"), MOUNTS);
        assert_eq!(found, Some(("ext4".to_owned(), PathBuf::from("/"))));
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
