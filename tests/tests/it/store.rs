//! The session-store torture: the kill -9 checker passes the correct writer and catches the
//! broken ones, and the power-loss images catch the no-fsync mutant.

use std::process::Command;

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
