//! The session-store torture: the kill -9 checker passes the correct writer and catches the
//! broken ones, and the power-loss images catch the no-fsync mutant.

use std::ffi::OsString;
use std::process::Command;

use sessionkit_tests::cli::{self, Invocation, Suite};
use sessionkit_tests::store::{self, StoreKill9Config};
use sessionkit_tests::store_child::StoreVariant;
use sessionkit_tests::store_power::{self, StorePowerConfig, StorePowerOutcome};

use super::exe;

fn kill9(variant: StoreVariant, kills: u64, seed: u64) -> store::StoreKill9Report {
    let mut config = StoreKill9Config::new(exe(), kills, seed, variant);
    config.fresh_every = 20;
    let report = store::run_kill9(&config).expect("the harness runs");
    println!("{report}");
    assert_eq!(report.kills, kills, "{report}");
    assert_eq!(
        report.verified + report.violations,
        report.kills,
        "{report}"
    );
    report
}

#[test]
fn store_kill9_passes_the_correct_writer() {
    let report = kill9(StoreVariant::Correct, 40, 0x5707_0001);
    assert_eq!(report.violations, 0, "{report}");
    assert!(report.acked > 0, "{report}");
    assert_eq!(report.pair_rounds, 10, "{report}");
    assert_eq!(report.sigkills, 50, "{report}");
}

#[test]
fn store_kill9_catches_an_ack_before_the_write() {
    let report = kill9(StoreVariant::AckEarly, 40, 0x5707_0002);
    assert!(report.violations >= 1, "{report}");
}

#[test]
fn store_kill9_catches_acks_of_updates_never_written() {
    let report = kill9(StoreVariant::SkipWrite, 40, 0x5707_0003);
    assert!(report.violations >= 1, "{report}");
}

#[test]
fn the_store_suite_fails_and_prints_the_seed_with_a_broken_writer() {
    let output = Command::new(exe())
        .args(["store", "--kills", "40", "--seed", "4243"])
        .args(["--store-writer", "ack-early"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("seed 4243"), "{stdout}");
    assert!(stdout.contains("\nFAIL: store kill -9: "), "{stdout}");
    assert!(stdout.contains("RESULT: FAIL"), "{stdout}");
}

#[test]
fn store_power_loss_images_pass_the_correct_writer_and_catch_no_fsync() {
    let config = StorePowerConfig::new(exe(), 20, 100, 0x5707_0004);
    let report = match store_power::run(&config).expect("the harness runs") {
        StorePowerOutcome::Ran(report) => report,
        StorePowerOutcome::Skipped(reason) => {
            println!("SKIP: store power-loss images: {reason}");
            return;
        }
    };
    println!("{report}");
    assert_eq!(report.variants.len(), 2, "{report}");
    assert_eq!(report.variants[0].variant, StoreVariant::Correct);
    assert_eq!(report.variants[0].images, 20, "{report}");
    assert!(report.variants[1].caught(), "{report}");
    assert!(report.failures().is_empty(), "{report}");
}

/// `strace`, or `None` after a `SKIP:` line if this machine has none or cannot trace.
fn strace() -> Option<std::path::PathBuf> {
    match store::find_strace() {
        Ok(path) => Some(path),
        Err(reason) => {
            println!("SKIP: store faults: {reason}");
            None
        }
    }
}

fn faults(variant: StoreVariant, kills: u64, seed: u64) -> Option<store::StoreKill9Report> {
    let mut config = StoreKill9Config::new(exe(), kills, seed, variant);
    config.fresh_every = 20;
    config.faults = Some(strace()?);
    config.max_delay = std::time::Duration::from_millis(80);
    let report = store::run_kill9(&config).expect("the harness runs");
    println!("{report}");
    assert_eq!(report.faulted_children, report.sigkills, "{report}");
    Some(report)
}

#[test]
fn store_faults_never_apply_a_failed_update_nor_lose_an_acknowledged_one() {
    let Some(report) = faults(StoreVariant::Correct, 40, 0x5707_0004) else {
        return;
    };
    assert_eq!(report.violations, 0, "{report}");
    assert_eq!(report.kills, 40, "{report}");
    assert!(report.acked > 0, "{report}");
    assert!(
        report.failed_updates > 0,
        "the faults failed no update: {report}"
    );
    assert!(
        report.full_disk_failures > 0,
        "no update failed with a full disk: {report}"
    );
}

#[test]
fn store_faults_catch_a_failed_update_that_was_applied() {
    let Some(report) = faults(StoreVariant::FalseFail, 40, 0x5707_0005) else {
        return;
    };
    assert!(report.violations >= 1, "{report}");
}

#[test]
fn the_store_suite_takes_its_writer_and_the_kills_under_faults() {
    let words: Vec<OsString> = [
        "store",
        "--fault-kills",
        "17",
        "--store-writer",
        "false-fail",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    match cli::parse(&words) {
        Ok(Invocation::Suite(options)) => {
            assert_eq!(options.suite, Suite::Store);
            assert_eq!(options.fault_kills, Some(17));
            assert_eq!(options.store_writer, StoreVariant::FalseFail);
        }
        other => panic!("parsed as {other:?}"),
    }
    for bad in [
        vec!["store", "--fault-kills"],
        vec!["store", "--fault-kills", "x"],
    ] {
        let words: Vec<OsString> = bad.iter().map(OsString::from).collect();
        assert!(cli::parse(&words).is_err(), "{bad:?} parsed");
    }
}
