//! Real kernel errors (reliability.md, R3): a full tmpfs, a read-only mount, `RLIMIT_FSIZE`.
//!
//! Mounting needs root; without it each test prints `SKIP:` and checks nothing else.

use std::fs;
use std::process::Command;

use sessionkit_atomic_fs::{AtomicWriter, Step, append_record};
use sessionkit_test_support::Mount;

use crate::util::Scratch;

/// The mount, or `None` after a `SKIP:` line saying why it could not be made.
fn mounted(mount: Result<Mount, String>) -> Option<Mount> {
    mount
        .inspect_err(|why| println!("SKIP: atomic-fs kernel errors: {why}"))
        .ok()
}

#[test]
fn kernel_full_tmpfs_gives_enospc_and_keeps_the_target() {
    let scratch = Scratch::new("enospc");
    let mnt = scratch.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let Some(_m) = mounted(Mount::tmpfs(&mnt, "size=64k")) else {
        return;
    };
    let target = mnt.join("sessions.json");
    fs::write(&target, b"old").unwrap();
    let err = sessionkit_atomic_fs::write(&target, vec![1u8; 1 << 20]).unwrap_err();
    assert_eq!(err.step(), Some(Step::Write), "{err}");
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(28), "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"old");
    assert_eq!(crate::util::names_in(&mnt), ["sessions.json"]);
}

#[test]
fn kernel_no_inodes_left_fails_at_create_temp() {
    let scratch = Scratch::new("inodes");
    let mnt = scratch.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let Some(_m) = mounted(Mount::tmpfs(&mnt, "size=1m,nr_inodes=3")) else {
        return;
    };
    // The root directory takes one inode; fill the rest.
    let target = mnt.join("t");
    fs::write(&target, b"old").unwrap();
    let mut n = 0;
    while fs::write(mnt.join(format!("fill{n}")), b"").is_ok() {
        n += 1;
        assert!(n < 100, "nr_inodes was not enforced");
    }
    let err = sessionkit_atomic_fs::write(&target, b"new").unwrap_err();
    assert_eq!(err.step(), Some(Step::CreateTemp), "{err}");
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(28), "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"old");
}

#[test]
fn kernel_read_only_mount_gives_erofs() {
    let scratch = Scratch::new("erofs");
    let (src, mnt) = (scratch.join("src"), scratch.join("mnt"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&mnt).unwrap();
    fs::write(src.join("t"), b"old").unwrap();
    let Some(m) = mounted(Mount::new(&["--bind", src.to_str().unwrap()], &mnt)) else {
        return;
    };
    m.remount("remount,bind,ro");
    let err = sessionkit_atomic_fs::write(mnt.join("t"), b"new").unwrap_err();
    assert_eq!(err.step(), Some(Step::CreateTemp), "{err}");
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(30), "{err}");
    let err = append_record(mnt.join("t"), b"{}").unwrap_err();
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(30), "{err}");
    assert_eq!(fs::read(mnt.join("t")).unwrap(), b"old");
}

const EFBIG_CHILD: &str = "SK_TEST_EFBIG_CHILD";

#[test]
fn kernel_rlimit_fsize_gives_efbig() {
    if let Some(target) = std::env::var_os(EFBIG_CHILD) {
        // Child side: runs under the limit with SIGXFSZ ignored; prints what happened.
        let err = AtomicWriter::new()
            .write(&target, &vec![2u8; 1 << 20])
            .unwrap_err();
        println!(
            "CHILD step={:?} errno={:?}",
            err.step(),
            err.io_error().and_then(|e| e.raw_os_error())
        );
        return;
    }
    let scratch = Scratch::new("efbig");
    let target = scratch.join("t");
    fs::write(&target, b"old").unwrap();
    // `trap '' XFSZ` sets SIG_IGN, which survives exec, so the write gets EFBIG instead of a kill.
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' XFSZ; exec prlimit --fsize=65536 -- "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args([
            "kernel::kernel_rlimit_fsize_gives_efbig",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EFBIG_CHILD, &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CHILD step=Some(Write) errno=Some(27)"),
        "{stdout}"
    );
    assert_eq!(fs::read(&target).unwrap(), b"old");
    assert_eq!(scratch.names(), ["t"], "no temp file left behind");
}
