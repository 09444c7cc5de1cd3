//! The signal hook: SIGINT and SIGTERM release this process's locks before it exits.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::util::{Scratch, lock_of};

const CHILD: &str = "SK_WL_TEST_SIGNAL";

#[test]
fn sigint_and_sigterm_remove_held_lock_files() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child_side(std::path::Path::new(&dir));
        return;
    }
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let dir = Scratch::new(&format!("signal-{signal}"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "signals::sigint_and_sigterm_remove_held_lock_files",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.join(""))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while !lines
            .next()
            .expect("the child printed nothing")
            .unwrap()
            .contains("HELD")
        {}
        assert!(lock_of(&dir.join("a")).exists() && lock_of(&dir.join("b")).exists());
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert_eq!(exit.code(), Some(code), "SIG{signal}");
        assert!(!lock_of(&dir.join("a")).exists(), "SIG{signal}: a");
        assert!(!lock_of(&dir.join("b")).exists(), "SIG{signal}: b");
    }
}

fn child_side(dir: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        sessionkit_write_lock::release_on_signals().unwrap();
        let locker = sessionkit_write_lock::Locker::new();
        let _a = locker.acquire_async(dir.join("a")).await.unwrap();
        let _b = locker.acquire_async(dir.join("b")).await.unwrap();
        println!("HELD");
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    });
}
