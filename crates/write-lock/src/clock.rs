//! The clock seam: wall time for records and ages, monotonic time for holds and deadlines.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Where the lock reads the time. Tests use [`ManualClock`] to drive the watchdog and the stale
/// rules without sleeping.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The wall-clock time, written into owner records and compared with their `createdAt`.
    fn now(&self) -> SystemTime;
    /// A monotonic instant, for hold times and deadlines.
    fn instant(&self) -> Instant;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to; both its wall and monotonic time advance together.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<(SystemTime, Instant)>,
}

impl ManualClock {
    /// A clock standing at the current time.
    pub fn new() -> ManualClock {
        ManualClock {
            state: Mutex::new((SystemTime::now(), Instant::now())),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += by;
        state.1 += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn instant(&self) -> Instant {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}
