//! When background work starts: maintenance passes (past the cap, with hysteresis, and on an
//! interval) and compactions after a failure (after growing pauses).
//!
//! The decisions are pure functions of a count and a clock reading, kept apart from the
//! threads that act on them, so that a property test can drive them through long histories
//! without threads or sleeps.

use std::time::{Duration, Instant};

use crate::maintain::{Maintenance, slack};

/// How soon a pass that ran out of time (or failed) is followed by the next, at most.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The shortest idle wait: a due pass starts when the writer looks, so waking sooner than
/// this has nothing to do; it only keeps a clock that runs behind from spinning the writer.
const MIN_IDLE_WAIT: Duration = Duration::from_millis(10);

/// The pause after the first failed compaction; each further failure in a row doubles it.
const FIRST_COMPACT_PAUSE: Duration = Duration::from_secs(1);

/// The longest pause between failed compactions.
const MOST_COMPACT_PAUSE: Duration = Duration::from_secs(300);

/// When background maintenance (and, after a failure, compaction) runs next, by the store's
/// monotonic clock ([`Clock::instant`](sessionkit_write_lock::Clock::instant)): a wall clock set
/// back would hold every timed pass, and the pause after a failed compaction, until it caught
/// up again.
#[derive(Debug)]
pub(crate) struct Schedule {
    /// When the next timed pass is due: an interval after the last pass started (or after
    /// the store opened), sooner after a pass that ran out of time or failed. `None`: no
    /// interval, and no pass to go on with.
    next_due: Option<Instant>,
    /// The count past which the cap starts the next pass, if higher than the cap's trigger: a
    /// pass that left the count above the trigger because it could evict nothing more (warn
    /// mode, active or protected entries) is not run again until the count grows by the slack
    /// once more, rather than after every batch.
    cap_rearm: Option<usize>,
    /// Background compactions that failed in a row (reset by one that finishes).
    compact_failures: u32,
    /// After a failed background compaction, none starts before this time: a compaction that
    /// fails (a full disk) would otherwise be tried again, whole, after every batch.
    compact_not_before: Option<Instant>,
}

/// How a background maintenance pass ended, as far as the schedule cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PassEnd {
    /// The pass could not evict what the cap asked for (warn mode, active or protected
    /// entries), or it failed.
    pub(crate) stuck: bool,
    /// The pass ran out of time, or failed: the next one should come soon.
    pub(crate) retry: bool,
}

impl Schedule {
    /// The schedule of a store opened at `now`: the first timed pass is due an interval later.
    pub(crate) fn new(now: Instant, interval: Option<Duration>) -> Schedule {
        Schedule {
            // An interval too long to add to the clock is never due.
            next_due: interval.and_then(|every| now.checked_add(every)),
            cap_rearm: None,
            compact_failures: 0,
            compact_not_before: None,
        }
    }

    /// Whether a background pass is due, if none is running: the count is past the cap's
    /// trigger (and past where a stuck pass re-arms it), or a timed pass is due. A count back
    /// at the trigger or below ends a stuck pass's wait: what kept its entries (active or
    /// protected ones) may have gone with them.
    pub(crate) fn pass_due(&mut self, config: &Maintenance, count: usize, now: Instant) -> bool {
        let trigger = config.cap_trigger();
        if trigger.is_some_and(|trigger| count <= trigger) {
            self.cap_rearm = None;
        }
        let over_cap =
            trigger.is_some_and(|trigger| count > trigger.max(self.cap_rearm.unwrap_or(0)));
        let timed = self.next_due.is_some_and(|due| now >= due);
        over_cap || timed
    }

    /// A background pass started at `now`: the next timed one is due an interval later.
    pub(crate) fn pass_started(&mut self, config: &Maintenance, now: Instant) {
        self.next_due = config.interval.and_then(|every| now.checked_add(every));
    }

    /// A background pass ended at `now`, leaving `count` entries.
    pub(crate) fn pass_ended(
        &mut self,
        config: &Maintenance,
        end: PassEnd,
        count: usize,
        now: Instant,
    ) {
        self.cap_rearm = config
            .max_entries
            .zip(config.cap_trigger())
            .filter(|&(_, trigger)| end.stuck && count > trigger)
            .map(|(max, _)| count.saturating_add(slack(max)));
        if end.retry {
            let soon = now + RETRY_AFTER;
            self.next_due = Some(self.next_due.map_or(soon, |due| due.min(soon)));
        }
    }

    /// How long the idle writer waits for a request before it looks again whether a pass is
    /// due; `None`: until a request comes. While a pass runs, at most [`RETRY_AFTER`], so that
    /// a pass that runs out of time is followed within about a second even with no requests;
    /// else until the next timed pass, at most an interval.
    pub(crate) fn idle_wait(
        &self,
        config: &Maintenance,
        running: bool,
        now: Instant,
    ) -> Option<Duration> {
        if running {
            return Some(RETRY_AFTER);
        }
        let until = self.next_due?.saturating_duration_since(now);
        let most = config.interval.unwrap_or(RETRY_AFTER).max(MIN_IDLE_WAIT);
        Some(until.clamp(MIN_IDLE_WAIT, most))
    }

    /// Whether a background compaction may start at `now`: not during the pause after a failed
    /// one.
    pub(crate) fn compaction_may_start(&self, now: Instant) -> bool {
        self.compact_not_before
            .is_none_or(|not_before| now >= not_before)
    }

    /// A background compaction ended at `now`; after a failure, returns how long the next one
    /// waits.
    pub(crate) fn compaction_ended(&mut self, ok: bool, now: Instant) -> Option<Duration> {
        if ok {
            self.compact_failures = 0;
            self.compact_not_before = None;
            return None;
        }
        self.compact_failures = self.compact_failures.saturating_add(1);
        let wait = compact_pause(self.compact_failures);
        self.compact_not_before = Some(now + wait);
        Some(wait)
    }
}

/// How long after the `failures`-th failed compaction in a row the next may start: 1 s,
/// doubling, at most 5 min.
fn compact_pause(failures: u32) -> Duration {
    FIRST_COMPACT_PAUSE
        .checked_mul(
            1u32.checked_shl(failures.saturating_sub(1))
                .unwrap_or(u32::MAX),
        )
        .map_or(MOST_COMPACT_PAUSE, |wait| wait.min(MOST_COMPACT_PAUSE))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::{PassEnd, Schedule};
    use crate::maintain::Maintenance;
    use crate::testing::documented_slack;

    /// The documented pause after the `failures`-th failed compaction in a row.
    fn documented_pause(failures: u32) -> Duration {
        let seconds = 2u128.saturating_pow(failures - 1).min(300);
        Duration::from_secs(seconds as u64)
    }

    #[derive(Clone, Copy, Debug)]
    enum Outcome {
        /// Evicted down to the cap.
        Done,
        /// Could evict only part of what the cap asked for (active or protected entries, or
        /// warn mode).
        Stuck,
        /// Ran out of time after part of the work.
        OutOfTime,
        /// Failed before evicting anything.
        Failed,
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// A batch adds and deletes entries; then the writer looks whether a pass is due.
        Batch { added: usize, deleted: usize },
        /// Time passes with no request; then the idle writer looks.
        Idle(Duration),
        /// The running pass, if any, ends; a partial one evicts this many thousandths of what
        /// the cap asked for.
        End(Outcome, u32),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0usize..120, 0usize..40)
                .prop_map(|(added, deleted)| Step::Batch { added, deleted }),
            2 => (0u64..90_000).prop_map(|ms| Step::Idle(Duration::from_millis(ms))),
            3 => (
                prop_oneof![
                    Just(Outcome::Done),
                    Just(Outcome::Stuck),
                    Just(Outcome::OutOfTime),
                    Just(Outcome::Failed),
                ],
                0u32..=1000,
            )
                .prop_map(|(outcome, part)| Step::End(outcome, part)),
        ]
    }

    /// What the documentation promises, kept as a history of what happened rather than as the
    /// schedule's own fields.
    #[derive(Debug)]
    struct Model {
        cap: Option<usize>,
        interval: Option<Duration>,
        count: usize,
        now: Instant,
        running: bool,
        /// When the last pass started, or the store opened.
        last_start: Instant,
        /// When a pass ran out of time or failed, if none has started since: the next goes on
        /// a second later.
        unfinished_at: Option<Instant>,
        /// The count a pass left above the cap's trigger because it could evict nothing more,
        /// if no pass has ended since and the count has not fallen to the trigger since: no
        /// pass for the cap until the count grows by the slack.
        stuck_with: Option<usize>,
    }

    impl Model {
        fn trigger(&self) -> Option<usize> {
            self.cap.map(|cap| cap + documented_slack(cap))
        }

        fn expects_pass(&self) -> bool {
            let by_cap = self.cap.zip(self.trigger()).is_some_and(|(cap, trigger)| {
                self.count > trigger
                    && self
                        .stuck_with
                        .is_none_or(|left| self.count > left + documented_slack(cap))
            });
            let timed = self
                .interval
                .is_some_and(|every| self.now >= self.last_start + every);
            let go_on = self
                .unfinished_at
                .is_some_and(|at| self.now >= at + Duration::from_secs(1));
            !self.running && (by_cap || timed || go_on)
        }

        /// When a pass becomes due by time alone, if ever.
        fn next_timed(&self) -> Option<Instant> {
            let timed = self.interval.map(|every| self.last_start + every);
            let go_on = self.unfinished_at.map(|at| at + Duration::from_secs(1));
            timed.into_iter().chain(go_on).min()
        }
    }

    /// The writer looks whether a pass is due, and starts it as the writer does.
    fn look(schedule: &mut Schedule, config: &Maintenance, model: &mut Model) {
        let due = schedule.pass_due(config, model.count, model.now) && !model.running;
        assert_eq!(due, model.expects_pass(), "{model:?}\n{schedule:?}");
        if due {
            schedule.pass_started(config, model.now);
            model.running = true;
            model.last_start = model.now;
            model.unfinished_at = None;
        }
    }

    /// The idle writer's wait: none only when time alone can start nothing, never much past
    /// the moment a pass falls due, and short while a pass runs.
    fn check_idle_wait(schedule: &Schedule, config: &Maintenance, model: &Model) {
        let wait = schedule.idle_wait(config, model.running, model.now);
        if model.running {
            assert_eq!(wait, Some(Duration::from_secs(1)), "{model:?}");
            return;
        }
        match (wait, model.next_timed()) {
            (None, None) => {}
            (Some(wait), Some(due)) => {
                let latest = due.max(model.now + Duration::from_millis(10));
                assert!(model.now + wait <= latest, "{wait:?} {model:?}");
                assert!(wait >= Duration::from_millis(10), "{wait:?} {model:?}");
            }
            (wait, due) => panic!("waits {wait:?} for a pass due {due:?}: {model:?}"),
        }
    }

    proptest! {
        /// Drives the maintenance schedule through histories of batches, idle time and passes
        /// that end every way, against what `Maintenance` documents: the cap starts a pass only
        /// past its slack, a stuck pass is not repeated until the count grows by the slack
        /// again (or falls to the trigger and then passes it), timed passes come an interval after the last start, and a pass that ran out of
        /// time or failed is followed a second later.
        #[test]
        fn background_passes_start_when_the_documentation_says(
            cap in prop_oneof![
                Just(None),
                proptest::sample::select(vec![0usize, 1, 10, 49, 50, 100, 249, 250, 251, 500, 1000])
                    .prop_map(Some),
            ],
            interval in proptest::option::of((1u64..120).prop_map(Duration::from_secs)),
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let config = Maintenance::new().max_entries(cap).interval(interval);
            let opened = Instant::now();
            let mut schedule = Schedule::new(opened, interval);
            let mut model = Model {
                cap,
                interval,
                count: 0,
                now: opened,
                running: false,
                last_start: opened,
                unfinished_at: None,
                stuck_with: None,
            };
            for step in steps {
                match step {
                    Step::Batch { added, deleted } => {
                        model.count = (model.count + added).saturating_sub(deleted);
                        if model.trigger().is_some_and(|trigger| model.count <= trigger) {
                            model.stuck_with = None;
                        }
                        look(&mut schedule, &config, &mut model);
                    }
                    Step::Idle(pause) => {
                        check_idle_wait(&schedule, &config, &model);
                        model.now += pause;
                        look(&mut schedule, &config, &mut model);
                    }
                    Step::End(_, _) if !model.running => {}
                    Step::End(outcome, part) => {
                        let asked = cap.map_or(0, |cap| model.count.saturating_sub(cap));
                        let partial = asked * part as usize / 1000;
                        let (evicted, stuck, retry) = match outcome {
                            Outcome::Done => (asked, false, false),
                            Outcome::Stuck => (partial, true, false),
                            Outcome::OutOfTime => (partial, false, true),
                            Outcome::Failed => (0, true, true),
                        };
                        model.count -= evicted;
                        model.now += Duration::from_millis(u64::from(part));
                        schedule.pass_ended(&config, PassEnd { stuck, retry }, model.count, model.now);
                        model.running = false;
                        model.stuck_with = model
                            .trigger()
                            .filter(|&trigger| stuck && model.count > trigger)
                            .map(|_| model.count);
                        if retry {
                            model.unfinished_at = Some(model.now);
                        }
                        check_idle_wait(&schedule, &config, &model);
                    }
                }
            }
        }

        /// Drives the compaction schedule through failures, successes and pauses: after the
        /// n-th failure in a row none starts for 1 s doubling per failure, at most 5 min; a
        /// success ends the pauses.
        #[test]
        fn failed_compactions_pause_as_documented(
            steps in proptest::collection::vec(
                prop_oneof![
                    3 => any::<bool>().prop_map(Ok),
                    2 => (0u64..400_000).prop_map(|ms| Err(Duration::from_millis(ms))),
                ],
                1..60,
            ),
        ) {
            let mut now = Instant::now();
            let mut schedule = Schedule::new(now, None);
            let mut failures = 0u32;
            let mut failed_at = now;
            for step in steps {
                let may = failures == 0 || now >= failed_at + documented_pause(failures);
                prop_assert_eq!(schedule.compaction_may_start(now), may, "{:?}", schedule);
                match step {
                    Err(pause) => now += pause,
                    // Only a compaction that may start can end.
                    Ok(_) if !may => {}
                    Ok(ok) => {
                        let wait = schedule.compaction_ended(ok, now);
                        if ok {
                            failures = 0;
                            prop_assert_eq!(wait, None);
                        } else {
                            failures += 1;
                            failed_at = now;
                            prop_assert_eq!(wait, Some(documented_pause(failures)));
                        }
                    }
                }
            }
        }
    }
}
