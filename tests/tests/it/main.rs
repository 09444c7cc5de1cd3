//! Integration tests of the torture harnesses. Each checker is shown to fail on a broken writer
//! or damaged bytes, so a passing torture run means something.

mod args;
mod lock;
mod payload;
mod store;

use std::path::PathBuf;
use std::process::Command;

use sessionkit_atomic_fs::Durability;
use sessionkit_tests::child::{ChildArgs, PayloadKind, Variant};
use sessionkit_tests::kill9::{self, Kill9Config};
use sessionkit_tests::payload::{
    INDEXED_SIZES, INITIAL_PAYLOAD, IndexedPayloads, Known, MAX_BODY, MIN_BODY, PayloadError,
    SEQ_HEADER_LEN, indexed_payload, parse_sequenced, sequenced_payload,
};
use sessionkit_tests::power::{self, PowerConfig, PowerOutcome};

/// The torture binary Cargo built for these tests; it plays the child writers.
fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessionkit-torture"))
}

#[test]
fn kill9_catches_an_in_place_writer() {
    let config = Kill9Config::new(exe(), 100, 0x1a5e_0001, Variant::InPlace);
    let report = kill9::run(&config).expect("the harness runs");
    println!("{report}");
    assert_eq!(report.kills, 100, "{report}");
    assert!(
        report.violations >= 1,
        "truncate-and-rewrite in place must be caught torn:\n{report}"
    );
    assert_eq!(report.verified + report.violations, report.kills);
}

#[test]
fn kill9_passes_the_correct_writer() {
    let config = Kill9Config::new(exe(), 100, 0x1a5e_0002, Variant::Correct);
    let report = kill9::run(&config).expect("the harness runs");
    println!("{report}");
    assert_eq!(report.kills, 100, "{report}");
    assert_eq!(report.violations, 0, "{report}");
    assert_eq!(report.verified, 100, "{report}");
    assert_eq!(report.durable_kills, 50);
    assert_eq!(report.atomic_only_kills, 50);
}

#[test]
fn sequenced_payloads_round_trip() {
    for (seq, len) in [(1, MIN_BODY), (42, 4096), (u64::MAX - 1, MAX_BODY)] {
        let payload = sequenced_payload(seq, len);
        assert_eq!(payload.len(), SEQ_HEADER_LEN + len);
        assert_eq!(parse_sequenced(&payload), Ok(seq));
    }
}

#[test]
fn sequenced_checker_rejects_truncation() {
    let payload = sequenced_payload(7, 300);
    for cut in 0..payload.len() {
        let err = parse_sequenced(&payload[..cut]).expect_err("a truncated payload must fail");
        if cut < SEQ_HEADER_LEN {
            assert_eq!(err, PayloadError::TooShort { len: cut });
        } else {
            assert!(
                matches!(err, PayloadError::LengthMismatch { .. }),
                "{cut}: {err}"
            );
        }
    }
}

#[test]
fn sequenced_checker_rejects_zero_fill() {
    // A data-less rename leaves the right size filled with NULs (reliability.md §B.2).
    for len in [0, 1, SEQ_HEADER_LEN, SEQ_HEADER_LEN + 300] {
        assert!(parse_sequenced(&vec![0; len]).is_err(), "{len} zero bytes");
    }
    let mut payload = sequenced_payload(9, 300);
    payload[SEQ_HEADER_LEN..].fill(0);
    assert!(matches!(
        parse_sequenced(&payload),
        Err(PayloadError::Checksum { .. })
    ));
}

#[test]
fn sequenced_checker_rejects_every_single_bit_flip() {
    let payload = sequenced_payload(11, MIN_BODY);
    for bit in 0..payload.len() * 8 {
        let mut damaged = payload.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(parse_sequenced(&damaged).is_err(), "bit {bit} flipped");
    }
}

#[test]
fn indexed_payloads_are_recognised_and_distinct() {
    let payloads = IndexedPayloads::new();
    assert_eq!(payloads.identify(INITIAL_PAYLOAD), Some(Known::Initial));
    for (i, &size) in INDEXED_SIZES.iter().enumerate() {
        let bytes = indexed_payload(i);
        assert_eq!(bytes.len(), size);
        assert_eq!(payloads.identify(&bytes), Some(Known::Indexed(i)));
    }
}

#[test]
fn indexed_checker_rejects_truncated_zeroed_and_flipped_payloads() {
    let payloads = IndexedPayloads::new();
    // Payloads 0 and 1 are too short to damage without becoming the empty payload.
    for i in 2..INDEXED_SIZES.len() {
        let good = indexed_payload(i);
        let truncated = &good[..good.len() - 1];
        // A cut to another payload's size would be that payload's length, but not its bytes.
        assert_eq!(payloads.identify(truncated), None, "payload {i} truncated");
        let half = &good[..good.len() / 2];
        assert_eq!(payloads.identify(half), None, "payload {i} halved");
        let zeroed = vec![0; good.len()];
        assert_eq!(payloads.identify(&zeroed), None, "payload {i} zero-filled");
        for at in [0, good.len() / 2, good.len() - 1] {
            let mut flipped = good.clone();
            flipped[at] ^= 0x10;
            assert_eq!(
                payloads.identify(&flipped),
                None,
                "payload {i} flipped at {at}"
            );
        }
    }
}

#[test]
fn child_args_round_trip_through_the_command_line() {
    let args = ChildArgs {
        dir: PathBuf::from("/tmp/some dir"),
        durability: Durability::AtomicOnly,
        seed: u64::MAX,
        variant: Variant::NoDirFsync,
        payloads: PayloadKind::Sequenced,
        start_seq: 12345,
    };
    let parsed = ChildArgs::parse(&args.to_args()).expect("parses");
    assert_eq!(parsed.dir, args.dir);
    assert_eq!(parsed.durability, args.durability);
    assert_eq!(parsed.seed, args.seed);
    assert_eq!(parsed.variant, args.variant);
    assert_eq!(parsed.payloads, args.payloads);
    assert_eq!(parsed.start_seq, args.start_seq);
}

/// Runs the binary with `words` and asserts it exits 2, a usage error.
fn assert_usage_error(words: &[&str]) {
    let output = Command::new(exe()).args(words).output().expect("runs");
    assert_eq!(
        output.status.code(),
        Some(2),
        "{words:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn usage_errors_exit_with_status_2() {
    for args in [
        vec![],
        vec!["bogus"],
        vec!["atomic", "--kills"],
        vec!["atomic", "--kills", "many"],
        vec!["atomic", "--frobnicate"],
        vec!["child-writer", "--seed", "1"],
        vec!["store", "--store-writer", "bogus"],
        vec!["store-child", "--seed", "1"],
    ] {
        assert_usage_error(&args);
    }
}

#[test]
fn the_binary_fails_and_prints_the_seed_when_the_writer_is_broken() {
    let output = Command::new(exe())
        .args(["atomic", "--kills", "60", "--images", "0", "--seed", "4242"])
        .args(["--kill9-writer", "in-place"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("seed 4242"), "{stdout}");
    assert!(stdout.contains("\nFAIL: kill -9: "), "{stdout}");
    assert!(stdout.contains("RESULT: FAIL"), "{stdout}");
}

#[test]
fn power_loss_images_pass_the_correct_writer_and_catch_both_mutants() {
    let config = PowerConfig {
        exe: exe(),
        base_dir: std::env::temp_dir(),
        correct_images: 20,
        mutant_cap: 400,
        seed: 0x1a5e_0003,
    };
    let report = match power::run(&config).expect("the harness runs") {
        PowerOutcome::Ran(report) => report,
        PowerOutcome::Skipped(reason) => {
            // Without root and loop devices there is nothing to check; say so like the binary.
            println!("SKIP: power-loss images: {reason}");
            return;
        }
    };
    assert_eq!(report.variants.len(), 3, "{report}");
    assert_eq!(report.variants[0].variant, Variant::Correct);
    assert_eq!(report.variants[0].images, 20, "{report}");
    assert!(report.failures().is_empty(), "{report}");
}
