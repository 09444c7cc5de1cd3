//! The lock-set checker (plan R7): a small run of the correct lock passes under both nemeses,
//! the naive-steal mutant is caught, and the history check itself rejects histories with a
//! value read twice, a generation going backwards, or an unexplained gap.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sessionkit_tests::cli::{self, Invocation, Suite};
use sessionkit_tests::lock_child::{LockTiming, LockVariant, LockerArgs};
use sessionkit_tests::lockcheck::{self, Histories, LockCheckConfig, Section, check_history};

use crate::{assert_usage_error, exe};

/// A clean history: worker `w(i)` read value `i` with generation `10 + 2i`, one after another.
fn clean(n: u64) -> Vec<Section> {
    (0..n)
        .map(|i| Section {
            worker: 100 + (i % 4) as u32,
            start_ns: 1_000 * i,
            end_ns: 1_000 * i + 500,
            generation: 10 + 2 * i,
            value: i,
        })
        .collect()
}

#[test]
fn a_small_run_of_the_correct_lock_passes_under_both_nemeses() {
    let mut config = LockCheckConfig::new(exe(), LockVariant::Correct, 500, 0x10c4_0001);
    config.min_kills = 3;
    config.min_holder_stops = 3;
    // The run ends as soon as its counts are met, and a counter that stops moving ends it as
    // stalled; the time limit is left at the default, minutes, so only a hang reaches it and
    // a slow machine never makes the run fall short.
    let report = lockcheck::run(&config).expect("the harness runs");
    println!("{report}");
    assert_eq!(report.violations(), 0, "{report}");
    assert!(!report.fell_short, "{report}");
    assert!(report.verdict.sections >= 500 - report.kills, "{report}");
    assert!(report.verdict.final_counter >= 500, "{report}");
    assert!(report.kills >= 3, "{report}");
    assert!(report.holder_stops >= 3, "{report}");
    assert_eq!(report.robbed, 0, "{report}");
    assert!(report.leftover_lock.is_none(), "{report}");
}

#[test]
fn the_steal_mutant_is_caught() {
    // The run ends as soon as the mutant is caught; the limit, minutes, is for a mutant that
    // never is, and a slow machine only makes the run longer.
    let config = LockCheckConfig::steal_mutant(exe(), 300, Duration::from_secs(600), 0x10c4_0002);
    let report = lockcheck::run(&config).expect("the harness runs");
    println!("{report}");
    assert!(report.holder_stops >= 1, "{report}");
    assert!(
        report.caught(),
        "the naive steal must lose updates:\n{report}"
    );
    assert!(report.violations() > 0, "{report}");
    assert!(
        report.robbed > 0,
        "a stopped holder must have been robbed:\n{report}"
    );
}

#[test]
fn a_clean_history_passes() {
    let sections = clean(50);
    let verdict = check_history(&sections, 50, 0);
    assert_eq!(verdict.violations(), 0, "{verdict:?}");
    assert_eq!(verdict.sections, 50);
    assert_eq!(verdict.indeterminate, 0);
    assert_eq!(verdict.wall_clock_overlaps, 0);
}

#[test]
fn a_value_read_twice_is_an_overlap_and_a_lost_update() {
    let mut sections = clean(20);
    // Two sections both read 7 and wrote 8: the counter ends one short.
    sections.push(Section {
        worker: 999,
        start_ns: 7_100,
        end_ns: 7_400,
        generation: 25,
        value: 7,
    });
    let verdict = check_history(&sections, 20, 0);
    assert_eq!(verdict.overlaps, 1, "{verdict:?}");
    assert_eq!(verdict.lost_updates, 1, "{verdict:?}");
    assert!(verdict.violations() >= 2, "{verdict:?}");
    assert!(
        verdict.examples.iter().any(|e| e.contains("value 7")),
        "{verdict:?}"
    );
    assert_eq!(verdict.wall_clock_overlaps, 1, "{verdict:?}");
}

#[test]
fn a_generation_going_backwards_is_a_violation() {
    let mut sections = clean(20);
    sections[12].generation = sections[11].generation - 1;
    let verdict = check_history(&sections, 20, 0);
    assert_eq!(verdict.generation_violations, 1, "{verdict:?}");
    assert_eq!(verdict.overlaps, 0);
    assert_eq!(verdict.lost_updates, 0);
    assert_eq!(verdict.violations(), 1);

    // An equal generation is not an increase either.
    let mut sections = clean(20);
    sections[5].generation = sections[4].generation;
    assert_eq!(check_history(&sections, 20, 0).generation_violations, 1);
}

#[test]
fn gaps_are_indeterminate_only_up_to_one_per_kill() {
    let mut sections = clean(30);
    // Values 10 and 20 were written by killed workers that never logged them.
    sections.retain(|s| s.value != 10 && s.value != 20);
    let allowed = check_history(&sections, 30, 2);
    assert_eq!(allowed.indeterminate, 2, "{allowed:?}");
    assert_eq!(allowed.violations(), 0, "{allowed:?}");

    let too_few_kills = check_history(&sections, 30, 1);
    assert_eq!(too_few_kills.unexplained_gaps, 1, "{too_few_kills:?}");
    assert_eq!(too_few_kills.violations(), 1, "{too_few_kills:?}");
}

#[test]
fn a_counter_that_went_back_is_a_lost_update() {
    // A stale writer set the counter back to 15 after 20 sections.
    let sections = clean(20);
    let verdict = check_history(&sections, 15, 0);
    assert_eq!(verdict.beyond_counter, 5, "{verdict:?}");
    assert_eq!(verdict.lost_updates, 5, "{verdict:?}");
    assert!(verdict.violations() >= 5);
}

#[test]
fn histories_parse_sections_aborts_and_torn_lines() {
    let mut histories = Histories::default();
    histories.add(
        42,
        "1 2 3 0\nabort 4 1 Revoked 160000\n5 6 7 1\nunowned 9 Superseded 12 77 8\n\
         unowned 10 Revoked 300500 - -\nunowned 11 Superseded 301000 - -\nraced 7 1\nnonsense line\n8 9 1",
    );
    assert_eq!(
        histories.sections,
        vec![
            Section {
                worker: 42,
                start_ns: 1,
                end_ns: 2,
                generation: 3,
                value: 0
            },
            Section {
                worker: 42,
                start_ns: 5,
                end_ns: 6,
                generation: 7,
                value: 1
            },
        ]
    );
    assert_eq!(histories.abort_count(), 1);
    assert_eq!(histories.aborts.get("Revoked"), Some(&1));
    assert_eq!(histories.torn_lines, 1);
    assert_eq!(histories.unowned.len(), 3);
    assert_eq!(histories.raced, vec![(42, 7, 1)]);
    // Only the guard that was not revoked and had held the lock for 12 us is unowned; the
    // others were stopped past the max hold right after the acquire.
    let unowned = histories.unowned_acquires(Duration::from_millis(150));
    assert_eq!(unowned.len(), 1, "{unowned:?}");
    assert_eq!(unowned[0].generation, 9);
    assert_eq!(unowned[0].owner, "pid 77 gen 8");
    assert_eq!(histories.bad_lines.len(), 1);
}

#[test]
fn locker_args_round_trip_through_the_command_line() {
    let args = LockerArgs {
        dir: PathBuf::from("/tmp/some dir"),
        variant: LockVariant::Steal,
        seed: u64::MAX,
        timing: LockTiming {
            acquire_timeout: Duration::from_millis(4321),
            max_hold: Duration::from_millis(111),
            stale_after: Duration::from_millis(222),
            malformed_grace: Duration::from_millis(33),
            steal_after: Duration::from_millis(44),
        },
        think_max: Duration::from_micros(55),
    };
    assert_eq!(LockerArgs::parse(&args.to_args()), Ok(args.clone()));
    let mut words = vec![OsString::from("child-locker")];
    words.extend(args.to_args());
    match cli::parse(&words) {
        Ok(Invocation::Suite(options)) => assert_eq!(options.child_locker, Some(args)),
        other => panic!("child-locker parsed as {other:?}"),
    }
}

#[test]
fn the_lock_suite_and_its_options_parse() {
    let words: Vec<OsString> = ["lock", "--quick", "--seed", "9", "--sections", "1234"]
        .into_iter()
        .map(OsString::from)
        .collect();
    match cli::parse(&words) {
        Ok(Invocation::Suite(options)) => {
            assert_eq!(options.suite, Suite::Lock);
            assert!(options.quick);
            assert_eq!(options.seed, Some(9));
            assert_eq!(options.sections, Some(1234));
            assert_eq!(options.child_locker, None);
        }
        other => panic!("parsed as {other:?}"),
    }
    for bad in [
        vec!["lock", "--sections"],
        vec!["lock", "--sections", "lots"],
        vec!["child-locker", "--seed", "1"],
        vec!["child-locker", "--dir", "/tmp", "--mutant", "borrow"],
    ] {
        assert_usage_error(&bad);
    }
}

#[test]
fn the_binary_runs_the_lock_suite_and_prints_the_seed() {
    let output = Command::new(exe())
        .args(["lock", "--sections", "200", "--seed", "5151"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("seed 5151"), "{stdout}");
    assert!(stdout.contains("lost updates: 0  overlaps: 0"), "{stdout}");
    assert!(stdout.contains("\nmutant caught: "), "{stdout}");
    assert!(stdout.contains("RESULT: PASS"), "{stdout}");
}

#[test]
fn workers_that_exit_on_their_own_are_reported() {
    // `false` stands in for the worker: it exits 1 at once, every time it is respawned. The run
    // ends once three such exits were reported, however slowly the machine runs them; a harness
    // that stopped reporting them would run on until the counter, which never moves, counts as
    // stalled, and fail below.
    let mut config = LockCheckConfig::new(PathBuf::from("false"), LockVariant::Correct, 10, 7);
    config.kills = false;
    config.stops = false;
    config.stop_after_worker_errors = Some(3);
    let report = lockcheck::run(&config).expect("the harness runs");
    println!("{report}");
    let on_their_own = report
        .worker_errors
        .iter()
        .filter(|e| e.contains("exited on its own (exit status: 1)"))
        .count();
    assert!(on_their_own >= 3, "{report}");
    // The workers still running when the run ended are reaped as failed.
    for error in &report.worker_errors {
        assert!(
            error.contains("exited on its own (exit status: 1)")
                || error.contains("failed (exit status: 1)"),
            "{error}"
        );
    }
    assert!(report.stalled.is_none(), "{report}");
    assert_eq!(report.verdict.final_counter, 0, "{report}");
}
