//! The controller: hands out guards for one unit of work and abandons what is left on cleanup.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Weak};

use crate::error::Result;
use crate::guard::{Held, LockGuard};
use crate::locker::Locker;

/// Tracks every guard it hands out for one unit of work (an agent run, a job), so that cleanup
/// can abandon whatever is still held, even by code that hung or forgot to release.
///
/// After [`cleanup`](LockController::cleanup) returns, every path it abandoned is free for
/// anyone at once, and the abandoned guards' later writes fail with
/// [`Error::Fenced`](crate::Error::Fenced) ([`FenceFailure::Abandoned`](crate::FenceFailure::Abandoned)).
/// Dropping the controller cleans up too.
#[derive(Debug)]
pub struct LockController {
    locker: Locker,
    label: Option<String>,
    held: Mutex<Vec<Weak<Held>>>,
}

/// What [`LockController::cleanup`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct CleanupReport {
    /// The targets whose locks were still held and are now abandoned.
    pub abandoned: Vec<PathBuf>,
    /// Abandonments whose lock file could not be removed (the OS lock is dropped anyway).
    pub failed: Vec<crate::Error>,
}

impl LockController {
    /// A controller handing out locks of `locker`.
    pub fn new(locker: Locker) -> LockController {
        LockController {
            locker,
            label: None,
            held: Mutex::new(Vec::new()),
        }
    }

    /// Names the unit of work in cleanup logs.
    pub fn with_label(mut self, label: impl Into<String>) -> LockController {
        self.label = Some(label.into());
        self
    }

    /// Takes the lock on `target` (as [`Locker::acquire`]) and tracks the guard.
    ///
    /// # Errors
    ///
    /// As [`Locker::acquire`].
    pub fn acquire(&self, target: impl AsRef<Path>) -> Result<LockGuard> {
        let guard = self.locker.acquire(target)?;
        self.track(&guard);
        Ok(guard)
    }

    /// Tracks a guard obtained elsewhere (from a resume, or the async acquire).
    pub fn track(&self, guard: &LockGuard) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|w| w.upgrade().is_some_and(|h| h.is_held()));
        held.push(std::sync::Arc::downgrade(guard.held()));
    }

    /// How many tracked guards are still held.
    pub fn held_count(&self) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .filter(|w| w.upgrade().is_some_and(|h| h.is_held()))
            .count()
    }

    /// Abandons every tracked guard still held: removes its lock file (if still its own),
    /// drops its OS lock, wakes the next waiter, and fires its revocation signal. Each one is
    /// logged with the owner pid and the path.
    pub fn cleanup(&self) -> CleanupReport {
        let holds: Vec<_> = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.drain(..).filter_map(|w| w.upgrade()).collect()
        };
        let mut report = CleanupReport::default();
        for held in holds {
            if !held.is_held() {
                continue;
            }
            tracing::warn!(
                path = %held.target.display(),
                pid = std::process::id(),
                unit = self.label.as_deref().unwrap_or(""),
                state = held.state_name(),
                "abandoning a lock still held at cleanup"
            );
            report.abandoned.push(held.target.clone());
            if let Err(e) = held.abandon() {
                report.failed.push(e);
            }
        }
        report
    }
}

impl Drop for LockController {
    fn drop(&mut self) {
        self.cleanup();
    }
}
