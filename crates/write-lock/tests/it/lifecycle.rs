//! The lock's lifecycle against a model: random sequences of acquires (waiting with a zero
//! timeout, trying, reentrant for a named holder, or through a controller), releases and drops,
//! fenced writes, suspensions and resumes, changes to a target behind the guards' backs, watchdog
//! passes after a manual clock moved, controller cleanups, and lock files of other owners planted
//! in the way (an OpenClaw holder whose pid a fake lookup calls alive, dead, a zombie, reused or
//! unknown; a crashed holder of ours with its generation; an empty file), on two targets through
//! two lockers with different max holds. After every step the real lock must agree with a small
//! model of what the crate documents:
//!
//! - a target has at most one holder, and an acquire of a held target fails at once (a timeout,
//!   or `None` from `try_acquire`) unless the same named holder acquires it again;
//! - an acquire takes over exactly the lock files that `inspect` calls free or stale (a dead,
//!   zombie or reused owner, a crashed holder of ours, a malformed file past its grace), never
//!   those of live or unknown owners, whatever their age;
//! - each new acquisition's fencing generation is above every earlier one's, a crashed holder's
//!   included, and the lock file records it;
//! - the lock file exists exactly while the target is held or planted;
//! - a watchdog pass revokes exactly its locker's holds past their max hold, and a cleanup
//!   exactly its controller's holds; their guards' writes then fail as fenced and write nothing;
//! - a resume fails as a takeover exactly when the target changed outside the guards while it
//!   was suspended.
//!
//! Time moves only through the manual clock, in whole seconds, and no acquire waits, so nothing
//! depends on the speed of the machine. 64 cases by default; `PROPTEST_CASES` sets another number.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use sessionkit_atomic_fs::{AtomicWriter, Durability};
use sessionkit_write_lock::{
    Clock, Error, FenceFailure, Liveness, LockConfig, LockController, LockGuard, Locker,
    ManualClock, OwnerLookup, ProcessProbe, Status, Suspended, format_created_at,
};

use crate::util::{Scratch, lock_of};

const TARGETS: [&str; 2] = ["a.jsonl", "b.jsonl"];
/// Each locker's max hold in seconds; the clock moves in whole seconds, so a step can land on it.
const MAX_HOLD_SECS: [u64; 2] = [10, 25];
/// The malformed grace in milliseconds: between two whole seconds, so no step lands on it.
const GRACE_MS: u64 = 4_500;
/// Reentrant holder names.
const KEYS: [&str; 2] = ["run-1", "run-2"];
/// The start time of every fake owner (a reused pid reports one more).
const START: u64 = 4242;
/// Fake owners' pids start above Linux's largest `pid_max`, so none is a real process.
const FIRST_PID: u32 = 5_000_000;

/// What the fake lookup says about a planted OpenClaw holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Alive,
    Dead,
    Zombie,
    /// Alive, but started at another time than the record says.
    Reused,
    /// The lookup fails (no permission, say).
    Unknown,
}

impl Owner {
    /// The probe's answer; `None` for a lookup that fails.
    fn probe(self) -> Option<ProcessProbe> {
        let (liveness, start) = match self {
            Owner::Alive => (Liveness::Alive, Some(START)),
            Owner::Reused => (Liveness::Alive, Some(START + 1)),
            Owner::Zombie => (Liveness::Zombie, Some(START)),
            Owner::Dead => (Liveness::Dead, None),
            Owner::Unknown => return None,
        };
        Some(ProcessProbe::new(liveness, start))
    }

    /// True if the stale rules give the lock up: the owner is gone or its pid is another's.
    fn is_gone(self) -> bool {
        match self {
            Owner::Dead | Owner::Zombie | Owner::Reused => true,
            Owner::Alive | Owner::Unknown => false,
        }
    }
}

/// The owner lookup, answering for the planted pids (any other pid is dead).
#[derive(Debug, Default)]
struct FakeOwners(Mutex<HashMap<u32, Owner>>);

impl FakeOwners {
    fn get(&self, pid: u32) -> Owner {
        let owners = self.0.lock().unwrap();
        owners.get(&pid).copied().unwrap_or(Owner::Dead)
    }

    fn set(&self, pid: u32, owner: Owner) {
        self.0.lock().unwrap().insert(pid, owner);
    }
}

impl OwnerLookup for FakeOwners {
    fn probe(&self, pid: u32) -> io::Result<ProcessProbe> {
        self.get(pid)
            .probe()
            .ok_or_else(|| io::Error::new(io::ErrorKind::PermissionDenied, "fake"))
    }

    fn cmdline(&self, _pid: u32) -> io::Result<Option<Vec<String>>> {
        Ok(None)
    }
}

/// How an acquire is made.
#[derive(Clone, Copy, Debug)]
enum How {
    /// `try_acquire`.
    Try,
    /// `acquire_timeout` with a zero timeout.
    Wait,
    /// `acquire_as` for `KEYS[i]` (the configured timeout is zero).
    As(usize),
    /// Through the controller, which wraps locker 0.
    Controller,
}

#[derive(Clone, Debug)]
enum Step {
    Acquire {
        locker: usize,
        target: usize,
        how: How,
    },
    /// Releases a guard, or drops it.
    Release {
        guard: Index,
        drop: bool,
    },
    /// Appends a record through a guard, or replaces the target.
    Write {
        guard: Index,
        replace: bool,
    },
    Suspend {
        guard: Index,
    },
    Resume {
        suspended: Index,
    },
    /// Appends to a target without a guard, as another program would.
    ExternalAppend {
        target: usize,
    },
    Advance {
        secs: u64,
    },
    WatchdogPass {
        locker: usize,
    },
    Cleanup,
    /// Plants an OpenClaw record in a free target's way.
    PlantOpenClaw {
        target: usize,
        owner: Owner,
    },
    /// Changes what the lookup says about a planted OpenClaw holder.
    SetOwner {
        target: usize,
        owner: Owner,
    },
    /// Plants a record of ours whose holder crashed: nobody holds its OS lock.
    PlantCrashed {
        target: usize,
        generation: u64,
    },
    /// Plants an empty lock file, as a holder that died before writing its record leaves.
    PlantEmpty {
        target: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let target = 0..TARGETS.len();
    let locker = 0..MAX_HOLD_SECS.len();
    let how = prop_oneof![
        1 => Just(How::Try),
        1 => Just(How::Wait),
        2 => (0..KEYS.len()).prop_map(How::As),
        1 => Just(How::Controller),
    ];
    let owner = prop::sample::select(vec![
        Owner::Alive,
        Owner::Dead,
        Owner::Zombie,
        Owner::Reused,
        Owner::Unknown,
    ]);
    prop_oneof![
        6 => (locker.clone(), target.clone(), how)
            .prop_map(|(locker, target, how)| Step::Acquire { locker, target, how }),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(guard, drop)| Step::Release { guard, drop }),
        3 => (any::<Index>(), any::<bool>())
            .prop_map(|(guard, replace)| Step::Write { guard, replace }),
        2 => any::<Index>().prop_map(|guard| Step::Suspend { guard }),
        2 => any::<Index>().prop_map(|suspended| Step::Resume { suspended }),
        1 => target.clone().prop_map(|target| Step::ExternalAppend { target }),
        3 => prop::sample::select(vec![1_u64, 2, 5, 10, 15, 25, 31]).prop_map(|secs| Step::Advance { secs }),
        3 => locker.prop_map(|locker| Step::WatchdogPass { locker }),
        1 => Just(Step::Cleanup),
        1 => (target.clone(), owner.clone())
            .prop_map(|(target, owner)| Step::PlantOpenClaw { target, owner }),
        1 => (target.clone(), owner).prop_map(|(target, owner)| Step::SetOwner { target, owner }),
        1 => (target.clone(), 0..64_u64)
            .prop_map(|(target, generation)| Step::PlantCrashed { target, generation }),
        1 => target.prop_map(|target| Step::PlantEmpty { target }),
    ]
}

/// Where a hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Held,
    Released,
    Revoked,
    Abandoned,
}

impl State {
    /// Why a guard of a hold in this state cannot write; `None` while it can.
    fn fence(self) -> Option<FenceFailure> {
        match self {
            State::Held => None,
            State::Released => Some(FenceFailure::Released),
            State::Revoked => Some(FenceFailure::Revoked),
            State::Abandoned => Some(FenceFailure::Abandoned),
        }
    }
}

/// One acquisition, shared by the guards of a reentrant holder.
#[derive(Debug)]
struct Hold {
    target: usize,
    /// The locker whose watchdog looks after it (the controller's is locker 0).
    locker: usize,
    key: Option<usize>,
    generation: u64,
    /// The model time of the acquire, in seconds.
    acquired: u64,
    guards: usize,
    state: State,
    /// Handed out by the controller and not yet cleaned up.
    tracked: bool,
}

/// What is in a target's way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lock {
    Free,
    /// Held by `holds[i]`.
    Ours(usize),
    /// An OpenClaw record naming this fake pid.
    OpenClaw(u32),
    /// A record of ours with this generation, whose holder is gone.
    Crashed(u64),
    /// An empty file, modified at this model time.
    Empty(u64),
}

/// What an acquire must do.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Take the lock, with a generation above every earlier one and above `floor`.
    New {
        floor: u64,
    },
    /// Hand out another guard of `holds[i]`.
    Reenter(usize),
    Busy,
}

/// The model of one target.
#[derive(Debug)]
struct Target {
    lock: Lock,
    /// The highest generation handed out or planted.
    generation: u64,
    content: Vec<u8>,
}

/// A suspended guard and what its resume must find.
struct Pending {
    suspended: Suspended,
    target: usize,
    /// The locker the guard came from, which the resume acquires through.
    locker: usize,
    key: Option<usize>,
    /// The target changed outside the guards since the suspension.
    changed: bool,
}

/// The real lock and its model, side by side.
struct Harness {
    /// Every guard not yet released, with its hold and the locker it came from.
    guards: Vec<(LockGuard, usize, usize)>,
    pending: Vec<Pending>,
    controller: LockController,
    lockers: Vec<Locker>,
    clock: Arc<ManualClock>,
    owners: Arc<FakeOwners>,
    writer: AtomicWriter,
    paths: Vec<PathBuf>,
    holds: Vec<Hold>,
    model: Vec<Target>,
    /// Model time in seconds.
    now: u64,
    next_pid: u32,
    writes: u64,
    // Last, so it outlives the guards and the controller that remove lock files on drop.
    _scratch: Scratch,
}

/// A lock call's result as an acquire's outcome: a guard, or `None` for a timeout.
fn guard_or_busy(result: Result<LockGuard, Error>) -> Result<Option<LockGuard>, TestCaseError> {
    match result {
        Ok(guard) => Ok(Some(guard)),
        Err(e) if e.is_timeout() => Ok(None),
        Err(e) => Err(TestCaseError::fail(format!("not a timeout: {e}"))),
    }
}

fn io_fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

impl Harness {
    fn new() -> Harness {
        let scratch = Scratch::new("lifecycle");
        let clock = Arc::new(ManualClock::new());
        // Whole seconds from here on, so a planted file's mtime is stored exactly even where
        // the file system keeps only seconds.
        let nanos = clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        clock.advance(Duration::from_nanos(u64::from(1_000_000_000 - nanos)));
        let owners = Arc::new(FakeOwners::default());
        let lockers: Vec<Locker> = MAX_HOLD_SECS
            .iter()
            .map(|&max_hold| {
                Locker::with_config(
                    LockConfig::builder()
                        .acquire_timeout(Duration::ZERO)
                        .max_hold(Duration::from_secs(max_hold))
                        .stale_after(Duration::from_secs(60))
                        .malformed_grace(Duration::from_millis(GRACE_MS))
                        .watchdog(false)
                        .clock(clock.clone())
                        .lookup(owners.clone())
                        .build()
                        .unwrap(),
                )
            })
            .collect();
        let mut writer = AtomicWriter::new();
        writer.durability(Durability::AtomicOnly);
        Harness {
            guards: Vec::new(),
            pending: Vec::new(),
            controller: LockController::new(lockers[0].clone()),
            lockers,
            clock,
            owners,
            writer,
            paths: TARGETS.iter().map(|name| scratch.join(name)).collect(),
            holds: Vec::new(),
            model: TARGETS
                .iter()
                .map(|_| Target {
                    lock: Lock::Free,
                    generation: 0,
                    content: Vec::new(),
                })
                .collect(),
            now: 0,
            next_pid: FIRST_PID,
            writes: 0,
            _scratch: scratch,
        }
    }

    /// What `inspect` must report for target `t`: its status and whether this process holds it.
    fn status(&self, t: usize) -> (Status, bool) {
        match self.model[t].lock {
            Lock::Free => (Status::Free, false),
            Lock::Ours(_) => (Status::Held, true),
            Lock::OpenClaw(pid) if self.owners.get(pid).is_gone() => (Status::Stale, false),
            Lock::OpenClaw(_) => (Status::Held, false),
            Lock::Crashed(_) => (Status::Stale, false),
            Lock::Empty(since) if (self.now - since) * 1000 > GRACE_MS => (Status::Stale, false),
            Lock::Empty(_) => (Status::Malformed, false),
        }
    }

    /// What an acquire of target `t` by holder `key` must do: a contender takes over what an
    /// observer calls free or stale, and only that.
    fn expect(&self, t: usize, key: Option<usize>) -> Expect {
        match self.model[t].lock {
            Lock::Ours(h) if key.is_some() && self.holds[h].key == key => Expect::Reenter(h),
            Lock::Crashed(floor) => Expect::New { floor },
            _ => match self.status(t).0 {
                Status::Free | Status::Stale => Expect::New { floor: 0 },
                _ => Expect::Busy,
            },
        }
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Acquire {
                locker,
                target,
                how,
            } => self.acquire(locker, target, how)?,
            Step::Release { guard, drop } => {
                if self.guards.is_empty() {
                    return Ok(());
                }
                let (guard, h, _) = self.guards.remove(guard.index(self.guards.len()));
                if drop {
                    std::mem::drop(guard);
                } else {
                    guard.release().map_err(io_fail)?;
                }
                self.let_go(h);
            }
            Step::Write { guard, replace } => self.write(guard, replace)?,
            Step::Suspend { guard } => self.suspend(guard)?,
            Step::Resume { suspended } => self.resume(suspended)?,
            Step::ExternalAppend { target } => {
                self.writes += 1;
                let line = format!("{{\"external\":{}}}\n", self.writes);
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.paths[target])
                    .and_then(|mut f| f.write_all(line.as_bytes()))
                    .map_err(io_fail)?;
                self.model[target]
                    .content
                    .extend_from_slice(line.as_bytes());
                for p in self.pending.iter_mut().filter(|p| p.target == target) {
                    p.changed = true;
                }
            }
            Step::Advance { secs } => {
                self.clock.advance(Duration::from_secs(secs));
                self.now += secs;
            }
            Step::WatchdogPass { locker } => {
                let report = self.lockers[locker].watchdog_pass();
                let max_hold = MAX_HOLD_SECS[locker];
                let now = self.now;
                let overdue = |h: &Hold| {
                    h.locker == locker && h.state == State::Held && now - h.acquired > max_hold
                };
                let expected = self.end_holds(overdue, State::Revoked);
                prop_assert_eq!(sorted(report.revoked), expected);
                prop_assert!(report.failed.is_empty(), "{:?}", report.failed);
                prop_assert!(report.deferred.is_empty(), "{:?}", report.deferred);
            }
            Step::Cleanup => {
                let report = self.controller.cleanup();
                let expected =
                    self.end_holds(|h| h.tracked && h.state == State::Held, State::Abandoned);
                for hold in &mut self.holds {
                    hold.tracked = false;
                }
                prop_assert_eq!(sorted(report.abandoned), expected);
                prop_assert!(report.failed.is_empty(), "{:?}", report.failed);
            }
            Step::PlantOpenClaw { target, owner } => {
                if self.model[target].lock != Lock::Free {
                    return Ok(());
                }
                let pid = self.next_pid;
                self.next_pid += 1;
                self.owners.set(pid, owner);
                let created = format_created_at(self.clock.now());
                self.plant(
                    target,
                    &format!(
                        "{{\"pid\": {pid}, \"createdAt\": \"{created}\", \"starttime\": {START}}}"
                    ),
                )?;
                self.model[target].lock = Lock::OpenClaw(pid);
            }
            Step::SetOwner { target, owner } => {
                if let Lock::OpenClaw(pid) = self.model[target].lock {
                    self.owners.set(pid, owner);
                }
            }
            Step::PlantCrashed { target, generation } => {
                if self.model[target].lock != Lock::Free {
                    return Ok(());
                }
                let created = format_created_at(self.clock.now());
                self.plant(
                    target,
                    &format!(
                        "{{\"pid\": {}, \"createdAt\": \"{created}\", \"sessionkit\": 1, \
                         \"generation\": {generation}, \"osLock\": true}}",
                        FIRST_PID - 1
                    ),
                )?;
                let model = &mut self.model[target];
                model.lock = Lock::Crashed(generation);
                model.generation = model.generation.max(generation);
            }
            Step::PlantEmpty { target } => {
                if self.model[target].lock != Lock::Free {
                    return Ok(());
                }
                self.plant(target, "")?;
                File::options()
                    .write(true)
                    .open(lock_of(&self.paths[target]))
                    .and_then(|f| f.set_modified(self.clock.now()))
                    .map_err(io_fail)?;
                self.model[target].lock = Lock::Empty(self.now);
            }
        }
        Ok(())
    }

    fn plant(&self, target: usize, record: &str) -> Result<(), TestCaseError> {
        fs::write(lock_of(&self.paths[target]), record).map_err(io_fail)
    }

    fn acquire(&mut self, locker: usize, target: usize, how: How) -> Result<(), TestCaseError> {
        let path = &self.paths[target];
        // The controller wraps locker 0 and tracks what it hands out.
        let (key, locker, tracked) = match how {
            How::As(key) => (Some(key), locker, false),
            How::Controller => (None, 0, true),
            How::Try | How::Wait => (None, locker, false),
        };
        let expect = self.expect(target, key);
        let got = match how {
            How::Try => self.lockers[locker].try_acquire(path).map_err(io_fail)?,
            How::Wait => guard_or_busy(self.lockers[locker].acquire_timeout(path, Duration::ZERO))?,
            How::As(key) => guard_or_busy(self.lockers[locker].acquire_as(path, KEYS[key]))?,
            How::Controller => guard_or_busy(self.controller.acquire(path))?,
        };
        self.admit(target, locker, key, tracked, expect, got)
    }

    /// Checks an acquire's outcome against `expect` and records the new guard.
    fn admit(
        &mut self,
        target: usize,
        locker: usize,
        key: Option<usize>,
        tracked: bool,
        expect: Expect,
        got: Option<LockGuard>,
    ) -> Result<(), TestCaseError> {
        let guard = match (expect, got) {
            (Expect::Busy, None) => return Ok(()),
            (Expect::Busy, Some(guard)) => {
                return Err(TestCaseError::fail(format!(
                    "acquired a lock that was not free: generation {}, model {:?}",
                    guard.generation(),
                    self.model[target].lock
                )));
            }
            (expect, None) => {
                return Err(TestCaseError::fail(format!(
                    "expected {expect:?}, but the lock was busy; model {:?}",
                    self.model[target].lock
                )));
            }
            (_, Some(guard)) => guard,
        };
        let h = match expect {
            Expect::Reenter(h) => {
                prop_assert_eq!(guard.generation(), self.holds[h].generation, "reentered");
                h
            }
            _ => {
                let floor = match expect {
                    Expect::New { floor } => floor,
                    _ => 0,
                };
                let earlier = self.model[target].generation.max(floor);
                prop_assert!(
                    guard.generation() > earlier,
                    "generation {} is not above {}",
                    guard.generation(),
                    earlier
                );
                self.model[target].generation = guard.generation();
                self.model[target].lock = Lock::Ours(self.holds.len());
                self.holds.push(Hold {
                    target,
                    locker,
                    key,
                    generation: guard.generation(),
                    acquired: self.now,
                    guards: 0,
                    state: State::Held,
                    tracked,
                });
                self.holds.len() - 1
            }
        };
        self.holds[h].guards += 1;
        self.guards.push((guard, h, locker));
        Ok(())
    }

    /// One guard of hold `h` is gone; the last one ends a hold still held.
    fn let_go(&mut self, h: usize) {
        let hold = &mut self.holds[h];
        hold.guards -= 1;
        if hold.guards == 0 && hold.state == State::Held {
            hold.state = State::Released;
            self.model[hold.target].lock = Lock::Free;
        }
    }

    /// Ends every hold that `which` picks in state `how`; returns their targets, sorted.
    fn end_holds(&mut self, which: impl Fn(&Hold) -> bool, how: State) -> Vec<PathBuf> {
        let mut ended = Vec::new();
        for hold in self.holds.iter_mut().filter(|h| which(h)) {
            hold.state = how;
            self.model[hold.target].lock = Lock::Free;
            ended.push(self.paths[hold.target].clone());
        }
        sorted(ended)
    }

    fn write(&mut self, guard: Index, replace: bool) -> Result<(), TestCaseError> {
        if self.guards.is_empty() {
            return Ok(());
        }
        let (guard, h, _) = &self.guards[guard.index(self.guards.len())];
        let hold = &self.holds[*h];
        self.writes += 1;
        let record = format!("{{\"write\":{}}}", self.writes);
        let result = if replace {
            guard.write_with(&self.writer, record.as_bytes())
        } else {
            guard.append(record.as_bytes()).map(|_| ())
        };
        let expected = hold.state.fence();
        prop_assert_eq!(
            result.as_ref().copied().map_err(|e| e.fence_failure()),
            expected.map_or(Ok(()), |reason| Err(Some(reason))),
            "{:?}",
            result
        );
        if result.is_ok() {
            let content = &mut self.model[hold.target].content;
            if replace {
                content.clear();
            }
            content.extend_from_slice(record.as_bytes());
            if !replace {
                content.push(b'\n');
            }
        }
        Ok(())
    }

    fn suspend(&mut self, guard: Index) -> Result<(), TestCaseError> {
        if self.guards.is_empty() {
            return Ok(());
        }
        let (guard, h, locker) = self.guards.remove(guard.index(self.guards.len()));
        let result = guard.suspend();
        let hold = &self.holds[h];
        match (hold.state.fence(), result) {
            (None, Ok(suspended)) => self.pending.push(Pending {
                suspended,
                target: hold.target,
                locker,
                key: hold.key,
                changed: false,
            }),
            (Some(reason), Err(e)) => prop_assert_eq!(e.fence_failure(), Some(reason), "{}", e),
            (expected, result) => {
                return Err(TestCaseError::fail(format!(
                    "suspend: expected the fence to say {expected:?}, got {result:?}"
                )));
            }
        }
        self.let_go(h);
        Ok(())
    }

    fn resume(&mut self, index: Index) -> Result<(), TestCaseError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let p = self.pending.remove(index.index(self.pending.len()));
        let expect = self.expect(p.target, p.key);
        let result = p.suspended.resume();
        match (expect, p.changed, result) {
            (Expect::Busy, _, Err(e)) => prop_assert!(e.is_timeout(), "{}", e),
            // The lock was taken and given back at once; what it was taken from is gone.
            (Expect::New { .. }, true, Err(e)) if e.is_takeover() => {
                self.model[p.target].lock = Lock::Free;
            }
            (Expect::Reenter(_), true, Err(e)) => prop_assert!(e.is_takeover(), "{}", e),
            (_, false, Ok(guard)) => {
                self.admit(p.target, p.locker, p.key, false, expect, Some(guard))?;
            }
            (expect, changed, result) => {
                return Err(TestCaseError::fail(format!(
                    "resume: expected {expect:?} (changed outside the guards: {changed}), got \
                     {result:?}"
                )));
            }
        }
        Ok(())
    }

    /// Compares the real lock with the model after a step.
    fn check(&self) -> Result<(), TestCaseError> {
        for (t, path) in self.paths.iter().enumerate() {
            let model = &self.model[t];
            let inspection = self.lockers[0].inspect(path).map_err(io_fail)?;
            prop_assert_eq!(
                (inspection.status, inspection.held_here),
                self.status(t),
                "{}: {:?}",
                TARGETS[t],
                inspection
            );
            prop_assert_eq!(
                lock_of(path).exists(),
                model.lock != Lock::Free,
                "{}: the lock file",
                TARGETS[t]
            );
            if let Lock::Ours(h) = model.lock {
                let recorded = inspection.record.as_ref().and_then(|r| r.generation);
                prop_assert_eq!(recorded, Some(self.holds[h].generation), "{}", TARGETS[t]);
            }
            let content = fs::read(path).unwrap_or_default();
            prop_assert_eq!(
                String::from_utf8_lossy(&content),
                String::from_utf8_lossy(&model.content),
                "{}: the content",
                TARGETS[t]
            );
        }
        let mut live: HashMap<PathBuf, u64> = HashMap::new();
        for (guard, h, _) in &self.guards {
            let hold = &self.holds[*h];
            let fence = hold.state.fence();
            prop_assert_eq!(guard.generation(), hold.generation);
            prop_assert_eq!(guard.is_held(), fence.is_none(), "{:?}", hold);
            prop_assert_eq!(guard.revocation().reason(), fence, "{:?}", hold);
            prop_assert_eq!(
                guard.check_fence().map_err(|e| e.fence_failure()),
                fence.map_or(Ok(()), |reason| Err(Some(reason))),
                "{:?}",
                hold
            );
            // At most one live holder per target, whatever the model says.
            if guard.is_held()
                && let Some(other) = live.insert(guard.lock_path().to_owned(), guard.generation())
            {
                prop_assert_eq!(other, guard.generation(), "two holders of {:?}", guard);
            }
        }
        let tracked = self
            .holds
            .iter()
            .filter(|h| h.tracked && h.state == State::Held)
            .count();
        prop_assert_eq!(self.controller.held_count(), tracked);
        Ok(())
    }
}

fn sorted(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths.sort();
    paths
}

/// 64 cases keep CI quick; `PROPTEST_CASES` asks for another number, as for every proptest.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_step_of_the_lifecycle_agrees_with_the_model(
        steps in prop::collection::vec(step(), 1..100),
    ) {
        let mut harness = Harness::new();
        for (i, step) in steps.iter().enumerate() {
            harness
                .step(step)
                .and_then(|()| harness.check())
                .map_err(|e| TestCaseError::fail(format!("step {i} {step:?}: {e}")))?;
        }
    }
}
