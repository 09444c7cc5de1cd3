//! The watchdog: one thread per process, started lazily, that revokes guards held past their
//! max hold.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::locker::{LockerShared, WatchdogReport};

/// The lockers the watchdog thread looks after.
fn watched() -> &'static Mutex<Vec<Weak<LockerShared>>> {
    static WATCHED: OnceLock<Mutex<Vec<Weak<LockerShared>>>> = OnceLock::new();
    WATCHED.get_or_init(Default::default)
}

/// Puts `locker` under the watchdog, starting the thread on first use.
pub(crate) fn watch(locker: &Arc<LockerShared>) {
    static STARTED: OnceLock<()> = OnceLock::new();
    {
        let mut list = watched().lock().unwrap_or_else(|e| e.into_inner());
        if !list.iter().any(|w| w.as_ptr() == Arc::as_ptr(locker)) {
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(locker));
        }
    }
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("sessionkit-lock-watchdog".into())
            .spawn(run);
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the lock watchdog; holds are not bounded");
        }
    });
}

fn run() {
    loop {
        let lockers: Vec<Arc<LockerShared>> = {
            let mut list = watched().lock().unwrap_or_else(|e| e.into_inner());
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        // Check often enough that a hold overruns its max by at most a quarter of it.
        let tick = lockers
            .iter()
            .map(|l| l.config.max_hold / 4)
            .min()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        for locker in &lockers {
            if locker.config.watchdog {
                pass(locker);
            }
        }
        drop(lockers);
        std::thread::sleep(tick);
    }
}

/// One pass over one locker's holds. A failure on one guard does not stop the pass.
pub(crate) fn pass(locker: &LockerShared) -> WatchdogReport {
    let now = locker.config.clock.instant();
    let holds: Vec<_> = {
        let mut list = locker.held.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|w| w.upgrade().is_some_and(|h| h.is_held()));
        list.iter().filter_map(Weak::upgrade).collect()
    };
    let mut report = WatchdogReport::default();
    for held in holds {
        let held_for = now.saturating_duration_since(held.acquired);
        if held_for <= held.max_hold || !held.is_held() {
            continue;
        }
        tracing::warn!(
            path = %held.target.display(),
            pid = std::process::id(),
            label = held.record.label.as_deref().unwrap_or(""),
            "lock held for {} ms (max {} ms); revoking",
            held_for.as_millis(),
            held.max_hold.as_millis()
        );
        match held.try_revoke() {
            // A guarded write is in flight: revoke on the next pass, once it is done.
            None => report.deferred.push(held.target.clone()),
            Some(Ok(())) => report.revoked.push(held.target.clone()),
            Some(Err(e)) => {
                report.revoked.push(held.target.clone());
                report.failed.push(e);
            }
        }
    }
    report
}
