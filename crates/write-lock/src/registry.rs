//! The in-process gate: at most one holder per lock file in this process, and a FIFO queue of
//! waiters that the release itself wakes (no polling between threads or tasks).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;
use std::thread::Thread;

/// How a queued waiter is woken.
#[derive(Debug)]
pub(crate) enum Wake {
    Thread(Thread),
    // Only the async acquire (feature `tokio`) waits as a task.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Task(Waker),
    Nobody,
}

#[derive(Debug)]
struct Waiter {
    ticket: u64,
    wake: Wake,
}

/// Who holds a lock file in this process.
#[derive(Debug, Clone)]
pub(crate) struct InProcessHolder {
    /// The caller-given holder identity, for opt-in reentrancy.
    pub(crate) key: Option<String>,
    /// The held lock's id.
    pub(crate) held_id: u64,
    /// The held lock itself, so a reentrant acquire can share it.
    pub(crate) held: Weak<crate::guard::Held>,
}

#[derive(Debug, Default)]
struct Slot {
    holder: Option<InProcessHolder>,
    queue: VecDeque<Waiter>,
}

/// The process-wide table of lock files.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    slots: Mutex<HashMap<PathBuf, Slot>>,
}

static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

/// The one registry of this process.
pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// What [`Registry::poll`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// This ticket is first in line and nobody in this process holds the lock file.
    Mine,
    /// Someone in this process holds it or is ahead in line.
    Wait,
}

impl Registry {
    fn slots(&self) -> MutexGuard<'_, HashMap<PathBuf, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the queue for `lock_path`; the ticket must later be [`leave`](Registry::leave)n.
    pub(crate) fn join(&self, lock_path: &Path) -> u64 {
        let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        self.slots()
            .entry(lock_path.to_path_buf())
            .or_default()
            .queue
            .push_back(Waiter {
                ticket,
                wake: Wake::Nobody,
            });
        ticket
    }

    /// Checks whether it is `ticket`'s turn; if not, records how to wake it.
    pub(crate) fn poll(&self, lock_path: &Path, ticket: u64, wake: Wake) -> Turn {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(lock_path) else {
            return Turn::Wait;
        };
        let first = slot.queue.front().map(|w| w.ticket) == Some(ticket);
        if first && slot.holder.is_none() {
            return Turn::Mine;
        }
        if let Some(waiter) = slot.queue.iter_mut().find(|w| w.ticket == ticket) {
            waiter.wake = wake;
        }
        Turn::Wait
    }

    /// The holder of `lock_path` in this process, if any.
    pub(crate) fn holder(&self, lock_path: &Path) -> Option<InProcessHolder> {
        self.slots().get(lock_path).and_then(|s| s.holder.clone())
    }

    /// Makes `ticket` (first in line) the holder and takes it out of the queue.
    pub(crate) fn take(&self, lock_path: &Path, ticket: u64, holder: InProcessHolder) {
        let mut slots = self.slots();
        let slot = slots.entry(lock_path.to_path_buf()).or_default();
        slot.queue.retain(|w| w.ticket != ticket);
        slot.holder = Some(holder);
    }

    /// Leaves the queue without taking the lock (timeout, cancellation); wakes the next waiter
    /// if this one was first.
    pub(crate) fn leave(&self, lock_path: &Path, ticket: u64) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(lock_path) else {
            return;
        };
        let was_first = slot.queue.front().map(|w| w.ticket) == Some(ticket);
        slot.queue.retain(|w| w.ticket != ticket);
        if was_first && slot.holder.is_none() {
            wake_first(slot);
        }
        if slot.holder.is_none() && slot.queue.is_empty() {
            slots.remove(lock_path);
        }
    }

    /// Ends the in-process hold of lock `held_id` and wakes the first waiter.
    pub(crate) fn release(&self, lock_path: &Path, held_id: u64) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(lock_path) else {
            return;
        };
        if slot.holder.as_ref().is_some_and(|h| h.held_id == held_id) {
            slot.holder = None;
            wake_first(slot);
        }
        if slot.holder.is_none() && slot.queue.is_empty() {
            slots.remove(lock_path);
        }
    }

    /// The number of waiters queued on `lock_path` in this process.
    pub(crate) fn waiters(&self, lock_path: &Path) -> usize {
        self.slots().get(lock_path).map_or(0, |s| s.queue.len())
    }

    /// Lets go of every lock held in this process; returns how many there were.
    pub(crate) fn release_all(&self) -> usize {
        let holds: Vec<_> = self
            .slots()
            .values()
            .filter_map(|s| s.holder.as_ref().and_then(|h| h.held.upgrade()))
            .collect();
        let mut released = 0;
        for held in holds {
            if held.is_held() {
                if let Err(e) = held.release_now() {
                    tracing::warn!(error = %e, "failed to remove a lock file");
                }
                released += 1;
            }
        }
        released
    }
}

fn wake_first(slot: &mut Slot) {
    if let Some(first) = slot.queue.front_mut() {
        match std::mem::replace(&mut first.wake, Wake::Nobody) {
            Wake::Thread(thread) => thread.unpark(),
            Wake::Task(waker) => waker.wake(),
            Wake::Nobody => {}
        }
    }
}
