//! The one place that judges a lock file: held, stale (with reasons) or malformed.
//!
//! The acquire path, [`inspect`](crate::Locker::inspect), the sweeper and the CLI all come here,
//! so there is exactly one set of stale rules.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::lookup::{Liveness, OwnerLookup};
use crate::owners::OwnerRule;
use crate::record::{OwnerRecord, Payload};
use crate::sys;

/// Why a lock counts as stale (or, for two of them, only reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StaleReason {
    /// The record promised that its owner holds an OS lock on the file, and that lock could be
    /// taken: the owner is gone (crash, kill -9), whatever its pid names now. Certain.
    OwnerGone,
    /// The record names a host whose boot id has changed: the machine rebooted since.
    Rebooted,
    /// The record has no valid pid.
    MissingPid,
    /// The owner's pid does not exist, or is a zombie.
    DeadPid,
    /// The pid exists but its start time differs from the record's: the pid was reused.
    RecycledPid,
    /// The record has no valid `createdAt`.
    InvalidCreatedAt,
    /// The record names this process, but this process does not hold the lock (a leftover of
    /// an earlier life of this pid, or a lost guard).
    OrphanSelfPid,
    /// Older than the stale age. Reported only: a live holder is never robbed for its age.
    TooOld,
    /// Held longer than the max hold its record declares. Reported only: the holder's own
    /// watchdog is the one that revokes it.
    HoldExceeded,
    /// The owner pid is alive but runs a program that is not ours (OpenClaw's
    /// `non-openclaw-owner`): the pid was most likely reused. Judged only with
    /// [`foreign_owners_stale`](crate::LockConfigBuilder::foreign_owners_stale) on.
    ForeignOwner,
}

impl StaleReason {
    /// True for the reasons that never justify removing a lock on their own.
    pub fn is_report_only(self) -> bool {
        matches!(self, StaleReason::TooOld | StaleReason::HoldExceeded)
    }

    /// True for the reasons that only say the record is malformed.
    pub fn is_malformed(self) -> bool {
        matches!(
            self,
            StaleReason::MissingPid | StaleReason::InvalidCreatedAt
        )
    }

    /// The reason's name as written in reports (`dead-pid`, `too-old`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::OwnerGone => "owner-gone",
            StaleReason::Rebooted => "rebooted",
            StaleReason::MissingPid => "missing-pid",
            StaleReason::DeadPid => "dead-pid",
            StaleReason::RecycledPid => "recycled-pid",
            StaleReason::InvalidCreatedAt => "invalid-created-at",
            StaleReason::OrphanSelfPid => "orphan-self-pid",
            StaleReason::TooOld => "too-old",
            StaleReason::HoldExceeded => "hold-exceeded",
            StaleReason::ForeignOwner => "foreign-owner",
        }
    }
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the judge decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Status {
    /// There is no lock file.
    Free,
    /// A live owner holds it (possibly with report-only reasons such as too old).
    Held,
    /// It may be removed: see the reasons.
    Stale,
    /// It has no valid record yet but is younger than the grace period (its owner may be
    /// writing it); it is kept.
    Malformed,
}

/// Who is judging, which changes two of OpenClaw's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Context {
    /// A contender trying to acquire: hold-exceeded is reported, and a record with our pid
    /// and no start time counts as an orphan of ours.
    Acquire,
    /// An outside observer (inspect, sweeper): hold-exceeded never appears, and our pid
    /// without a start time proves nothing.
    Observe,
}

/// Everything the judge needs about one lock file, gathered by the caller.
#[derive(Debug)]
pub(crate) struct Observation<'a> {
    pub(crate) payload: &'a Payload,
    /// The lock file's modification time.
    pub(crate) mtime: SystemTime,
    /// `Some(true)` if the OS lock on the file could be taken, `Some(false)` if someone holds
    /// it, `None` if it was not tried.
    pub(crate) os_lock_free: Option<bool>,
    /// True if this process holds this lock file through one of its guards.
    pub(crate) held_here: bool,
}

/// The judge's verdict with everything a report needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) status: Status,
    pub(crate) reasons: Vec<StaleReason>,
    /// The owner's liveness, if it was looked up.
    pub(crate) liveness: Option<Liveness>,
    /// The lock's age: from the record's `createdAt`, else from the file's mtime.
    pub(crate) age: Duration,
}

/// The policy values the rules use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules<'a> {
    pub(crate) stale_after: Duration,
    pub(crate) malformed_grace: Duration,
    /// Which live owners are ours, when foreign owners count as stale.
    pub(crate) foreign_unless: Option<&'a OwnerRule>,
}

/// Judges one lock file. Pure apart from the owner lookup.
pub(crate) fn judge(
    obs: &Observation<'_>,
    rules: Rules<'_>,
    context: Context,
    now: SystemTime,
    lookup: &dyn OwnerLookup,
) -> Verdict {
    let mtime_age = now.duration_since(obs.mtime).unwrap_or(Duration::ZERO);
    let record = match obs.payload {
        Payload::Record(record) => record,
        // No record at all counts as a record missing every field.
        Payload::Empty | Payload::Unparsable => &OwnerRecord::default(),
    };
    let age = record
        .created_at_ms
        .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .and_then(|created| now.duration_since(created).ok())
        .unwrap_or(mtime_age);

    // Kernel-verified liveness: the owner holds the OS lock while it lives.
    if record.promises_os_lock() {
        return match obs.os_lock_free {
            Some(true) => Verdict {
                status: Status::Stale,
                reasons: vec![StaleReason::OwnerGone],
                liveness: None,
                age,
            },
            _ => {
                let mut reasons = Vec::new();
                if age > rules.stale_after {
                    reasons.push(StaleReason::TooOld);
                }
                if record
                    .max_hold_ms
                    .is_some_and(|max| age > Duration::from_millis(max))
                {
                    reasons.push(StaleReason::HoldExceeded);
                }
                Verdict {
                    status: Status::Held,
                    reasons,
                    liveness: Some(Liveness::Alive),
                    age,
                }
            }
        };
    }

    // Everything else is judged by OpenClaw's rules.
    let mut reasons = Vec::new();
    let mut liveness = None;
    let same_host =
        record.hostname.is_none() || record.hostname.as_deref() == sys::hostname().as_deref();
    let own_pid = std::process::id();
    match record.pid {
        None => reasons.push(StaleReason::MissingPid),
        Some(_) if !same_host => {}
        Some(pid) => {
            if record.boot_id.is_some()
                && sys::boot_id().is_some()
                && record.boot_id != sys::boot_id()
            {
                reasons.push(StaleReason::Rebooted);
            } else if let Ok(probe) = lookup.probe(pid) {
                liveness = Some(probe.liveness);
                match probe.liveness {
                    Liveness::Dead | Liveness::Zombie => reasons.push(StaleReason::DeadPid),
                    Liveness::Alive => {
                        if let (Some(stored), Some(current)) = (record.starttime, probe.start_time)
                            && stored != current
                        {
                            reasons.push(StaleReason::RecycledPid);
                        } else if let Some(ours) = rules.foreign_unless
                            && pid != own_pid
                            // An unreadable or blank command line tells nothing.
                            && let Ok(Some(argv)) = lookup.cmdline(pid)
                            && argv.iter().any(|a| !a.trim().is_empty())
                            && !ours.is_ours(&argv)
                        {
                            reasons.push(StaleReason::ForeignOwner);
                        }
                    }
                }
            }
            // A lookup that fails tells nothing: the lock is kept.
        }
    }
    match record.created_at_ms {
        None => reasons.push(StaleReason::InvalidCreatedAt),
        Some(_) if age > rules.stale_after => reasons.push(StaleReason::TooOld),
        Some(_) => {}
    }
    if context == Context::Acquire
        && !obs.held_here
        && record
            .max_hold_ms
            .is_some_and(|max| age > Duration::from_millis(max))
    {
        reasons.push(StaleReason::HoldExceeded);
    }
    if record.pid == Some(own_pid) && !obs.held_here && liveness == Some(Liveness::Alive) {
        let own_start = sys::own_start_time();
        let orphan = match record.starttime {
            None => context == Context::Acquire,
            Some(stored) => own_start == Some(stored),
        };
        if orphan {
            reasons.push(StaleReason::OrphanSelfPid);
        }
    }
    reasons.sort();
    reasons.dedup();

    let removable: Vec<_> = reasons.iter().filter(|r| !r.is_report_only()).collect();
    let status = if removable.is_empty() {
        Status::Held
    } else if removable.iter().all(|r| r.is_malformed()) {
        // Its owner may still be writing it: wait out the grace period (by the file's age,
        // since the record has no usable time).
        if mtime_age > rules.malformed_grace.min(rules.stale_after) {
            Status::Stale
        } else {
            Status::Malformed
        }
    } else {
        Status::Stale
    };
    Verdict {
        status,
        reasons,
        liveness,
        age,
    }
}
