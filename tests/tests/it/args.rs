//! The binary's command lines: every role's arguments survive the trip through `to_args` and
//! `parse`, and no list of words makes a parser panic.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use sessionkit_atomic_fs::Durability;
use sessionkit_tests::child::{ChildArgs, PayloadKind, Variant};
use sessionkit_tests::cli;
use sessionkit_tests::lock_child::{LockTiming, LockVariant, LockerArgs};
use sessionkit_tests::store_child::{StoreChildArgs, StoreVariant};

fn dir() -> impl Strategy<Value = PathBuf> {
    "[ -~]{0,24}".prop_map(PathBuf::from)
}

fn child_args() -> impl Strategy<Value = ChildArgs> {
    let variant = prop::sample::select(vec![
        Variant::Correct,
        Variant::NoTempFsync,
        Variant::NoDirFsync,
        Variant::InPlace,
    ]);
    let durability = prop::sample::select(vec![Durability::Durable, Durability::AtomicOnly]);
    let payloads = prop::sample::select(vec![PayloadKind::Indexed, PayloadKind::Sequenced]);
    (
        dir(),
        durability,
        any::<u64>(),
        variant,
        payloads,
        any::<u64>(),
    )
        .prop_map(
            |(dir, durability, seed, variant, payloads, start_seq)| ChildArgs {
                dir,
                durability,
                seed,
                variant,
                payloads,
                start_seq,
            },
        )
}

fn store_child_args() -> impl Strategy<Value = StoreChildArgs> {
    let variant = prop::sample::select(vec![
        StoreVariant::Correct,
        StoreVariant::AckEarly,
        StoreVariant::SkipWrite,
        StoreVariant::NoFsync,
        StoreVariant::FalseFail,
    ]);
    let counts = (any::<u64>(), any::<u64>(), 1..=u64::MAX, any::<u64>());
    let more = (any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>());
    (dir(), counts, more, variant, any::<bool>()).prop_map(
        |(
            dir,
            (seed, gen_, threads, thread_base),
            (live_keys, compact, readers, check),
            variant,
            faults,
        )| {
            StoreChildArgs {
                dir,
                seed,
                gen_,
                threads,
                thread_base,
                live_keys,
                compact_every_ms: compact,
                readers,
                disk_check: check,
                variant,
                faults,
            }
        },
    )
}

fn locker_args() -> impl Strategy<Value = LockerArgs> {
    let ms = || (0..=u64::MAX / 1_000_000).prop_map(Duration::from_millis);
    let timing = (ms(), ms(), ms(), ms(), ms()).prop_map(
        |(acquire_timeout, max_hold, stale_after, malformed_grace, steal_after)| LockTiming {
            acquire_timeout,
            max_hold,
            stale_after,
            malformed_grace,
            steal_after,
        },
    );
    let variant = prop::sample::select(vec![LockVariant::Correct, LockVariant::Steal]);
    let think = (0..=u64::MAX / 1_000).prop_map(Duration::from_micros);
    (dir(), variant, any::<u64>(), timing, think).prop_map(
        |(dir, variant, seed, timing, think_max)| LockerArgs {
            dir,
            variant,
            seed,
            timing,
            think_max,
        },
    )
}

/// Words a command line might hold: every flag any role knows, values good and bad.
fn words() -> impl Strategy<Value = Vec<OsString>> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "--dir",
            "--seed",
            "--mutant",
            "--durability",
            "--payloads",
            "--start-seq",
            "--gen",
            "--threads",
            "--variant",
            "--disk-check",
            "--max-hold-ms",
            "--think-us",
            "--quick",
            "--kills",
            "--store-writer",
            "--fault-kills",
            "--faults",
            "false-fail",
            "atomic",
            "store",
            "child-writer",
            "child-locker",
            "store-child",
            "durable",
            "steal",
            "no-fsync",
            "0",
            "-1",
            "18446744073709551616",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,8}",
    ];
    prop::collection::vec(word.prop_map(OsString::from), 0..10)
}

proptest! {
    #[test]
    fn child_writer_args_round_trip(args in child_args()) {
        prop_assert_eq!(ChildArgs::parse(&args.to_args()), Ok(args));
    }

    #[test]
    fn store_child_args_round_trip(args in store_child_args()) {
        prop_assert_eq!(StoreChildArgs::parse(&args.to_args()), Ok(args));
    }

    #[test]
    fn child_locker_args_round_trip(args in locker_args()) {
        prop_assert_eq!(LockerArgs::parse(&args.to_args()), Ok(args));
    }

    #[test]
    fn no_words_make_a_parser_panic(words in words()) {
        // Each answers with a value or a message; a message names what was wrong.
        if let Err(message) = ChildArgs::parse(&words) {
            prop_assert!(!message.is_empty());
        }
        if let Err(message) = StoreChildArgs::parse(&words) {
            prop_assert!(!message.is_empty());
        }
        if let Err(message) = LockerArgs::parse(&words) {
            prop_assert!(!message.is_empty());
        }
        if let Err(message) = cli::parse(&words) {
            prop_assert!(!message.is_empty());
        }
    }
}
